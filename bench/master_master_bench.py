"""Master-master benchmark: one direction with conflict detection on, against one-way.

    python bench/master_master_bench.py [--rows 20000] [--tx-rows 100] [--runs 2]

The same direction, pg-source -> pg-replica of the local stack, through the
real ``cdc source`` and ``cdc sink`` processes, in two setups that alternate
(``--runs`` times each, so both see the same machine load):

``one-way``
    a plain source of pg-source and a plain sink into pg-replica;
``one-way+conflicts`` (with ``--split``)
    the one-way pipeline whose sink alone has conflict detection on
    (``origin`` and ``conflicts``), to tell the sink's cost from the rest;
``master-master``
    a ``master_master:`` pipeline of the two nodes (both sources skip
    replicated changes; each sink detects conflicts, keeps row versions and
    reads its node's own topic). Only pg-source is written, so no record
    conflicts: this is the cost of loop prevention plus detection.

Each run writes ``--rows`` inserts and then one update of every row on
pg-source (transactions of ``--tx-rows`` rows, written server-side in one
go), into a table with REPLICA IDENTITY FULL on both nodes, and reports
changes/s from the first commit to the moment pg-replica holds every row's
final version. Needs the local stack (``make up``); honours CDC_PORT_OFFSET.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.mm_nodes import NS, Node  # noqa: E402
from tests.fixtures.processes import Processes  # noqa: E402
from tests.fixtures.services import resolve_endpoints  # noqa: E402

WRITE = """
CREATE PROCEDURE {ns}.{t}_work(total int, per_tx int) LANGUAGE plpgsql AS $$
BEGIN
  FOR b IN 0..(total - 1) / per_tx LOOP
    INSERT INTO {ns}.{t} SELECT i, 'row ' || i, 0
      FROM generate_series(b * per_tx + 1, least((b + 1) * per_tx, total)) i;
    COMMIT;
  END LOOP;
  FOR b IN 0..(total - 1) / per_tx LOOP
    UPDATE {ns}.{t} SET v = v || ' updated', n = 1
      WHERE id BETWEEN b * per_tx + 1 AND (b + 1) * per_tx;
    COMMIT;
  END LOOP;
END $$"""


def _config(setup: str, run: str, env: Any, a: Node, b: Node, table: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": env.kafka_bootstrap, "offsets_topic": f"{run}.offsets",
                  "topics": {"partitions": 3, "replication_factor": 1}},
        "schema_registry": {"url": env.schema_registry_url},
        "metrics": {"enabled": False},
    }
    src = {"snapshot": {"mode": "never"}, "heartbeat_interval_s": 1}
    if setup != "master-master":
        base["sources"] = [{"name": a.name, "kind": "postgres", "connection": a.connection(),
                            "tables": {"include": [f"{NS}.{table}"]}, **src}]
        base["sinks"] = [{"name": f"{b.name}_sink", "kind": "postgres",
                          "target": b.connection(), "topics": [f"{a.name}.{NS}.*"],
                          "tables": {"same_namespace": True}}]
        if setup == "one-way+conflicts":  # the sink's detection alone, nothing else
            base["sinks"][0].update(origin=b.name, conflicts={})
    else:
        base["master_master"] = {"tables": {"include": [f"{NS}.{table}"]}, "nodes": [
            {"name": n.name, "kind": "postgres", "connection": n.connection(), "source": src}
            for n in (a, b)]}
    return base


@contextlib.contextmanager
def _pipeline(setup: str, a: Node, b: Node, table: str, env: Any,
              workdir: Path) -> Iterator[Processes]:
    run = f"mmb{random.randrange(10**6)}"
    path = workdir / f"{run}.yaml"
    path.write_text(yaml.safe_dump(_config(setup, run, env, a, b, table)))
    procs = Processes(workdir)
    try:
        procs.start(f"{run}_source_a", "source", str(path), "--name", a.name)
        procs.start(f"{run}_sink_b", "sink", str(path), "--name", f"{b.name}_sink")
        if setup == "master-master":
            procs.start(f"{run}_source_b", "source", str(path), "--name", b.name)
            procs.start(f"{run}_sink_a", "sink", str(path), "--name", f"{a.name}_sink")
        yield procs
    finally:
        procs.close()


def _until_streaming(a: Node, b: Node, table: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamp = int(time.monotonic() * 1000) % 10**9
        a.upsert(table, -1, "probe", stamp)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            if b.rows(table).get(-1) == ("probe", stamp):
                a.delete(table, -1)
                return
            time.sleep(0.2)
    raise SystemExit("the pipeline never streamed")


def measure(setup: str, rows: int, tx_rows: int, env: Any, workdir: Path) -> float:
    a = Node("mmb_a", "postgres", env.pg_source_dsn)
    b = Node("mmb_b", "postgres", env.pg_replica_dsn)
    table = f"bench_{random.randrange(10**6)}"
    for n in (a, b):
        n.cleanup()
        n.create(table)
    a.run(WRITE.format(ns=NS, t=table))
    try:
        with _pipeline(setup, a, b, table, env, workdir):
            _until_streaming(a, b, table)
            time.sleep(2)  # let the probe's delete through
            t0 = time.monotonic()
            a.run(f"CALL {NS}.{table}_work(%s, %s)", (rows, tx_rows))
            wrote = time.monotonic() - t0
            while True:
                got = b.run(f"SELECT count(*) FROM {NS}.{table} WHERE n = 1")[0][0]
                if got >= rows:
                    break
                time.sleep(0.1)
            secs = time.monotonic() - t0
        rate = 2 * rows / secs
        print(f"{setup:18s} {2 * rows} changes in {secs:6.1f}s = {rate:8.0f} changes/s "
              f"(writing took {wrote:.1f}s)", flush=True)
        return rate
    finally:
        for n in (a, b):
            n.drop(table)
            n.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows inserted, then updated")
    ap.add_argument("--tx-rows", type=int, default=100, help="rows per transaction")
    ap.add_argument("--runs", type=int, default=2, help="alternating runs of each setup")
    ap.add_argument("--split", action="store_true",
                    help="also run one-way with only the sink's conflict detection on")
    args = ap.parse_args()
    env = resolve_endpoints()
    results: dict[str, list[float]] = {"one-way": [], "master-master": []}
    if args.split:
        results["one-way+conflicts"] = []
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        for _ in range(args.runs):
            for setup in results:
                results[setup].append(measure(setup, args.rows, args.tx_rows, env, Path(tmp)))
    for setup, rates in results.items():
        print(f"{setup:18s} best {max(rates):8.0f}  worst {min(rates):8.0f} changes/s "
              f"over {len(rates)} runs")
    ratio = max(results["master-master"]) / max(results["one-way"])
    print(f"master-master / one-way (best runs): {ratio:.2f}")


if __name__ == "__main__":
    main()
