"""Demo workload for the compose sources: inserts, updates and deletes on ``demo_orders``.

Runs in the cdc worker image (docker-compose.yml services ``workload-pg`` and
``workload-mysql``) with the same connection variables the pipeline file reads:
``PG_SOURCE_HOST``/``_PORT``/``_DB``/``_USER``/``_PASSWORD`` for ``postgres``,
``MYSQL_SOURCE_*`` for ``mysql``. It creates the table if missing, then runs
``--rate`` small transactions per second until stopped, or ``--transactions``
of them. Standalone: needs psycopg or PyMySQL, not cdc.

    python workload.py postgres --rate 20
    python workload.py mysql --transactions 100 --table demo_orders
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

_stop = False


def _on_signal(_sig: int, _frame: object) -> None:
    global _stop
    _stop = True


def _env(prefix: str, key: str, default: str | None = None) -> str:
    value = os.environ.get(f"{prefix}_{key}", default)
    if value is None:
        raise SystemExit(f"workload: set {prefix}_{key}")
    return value


def _connect_pg(table: str) -> tuple[Any, Callable[[str, tuple[Any, ...]], None], Callable[[], None]]:
    import psycopg

    kwargs: dict[str, Any] = {
        "host": _env("PG_SOURCE", "HOST"), "port": int(_env("PG_SOURCE", "PORT", "5432")),
        "dbname": _env("PG_SOURCE", "DB", "cdc_source"), "user": _env("PG_SOURCE", "USER", "postgres"),
        "connect_timeout": 10,
    }
    if os.environ.get("PG_SOURCE_PASSWORD"):
        kwargs["password"] = os.environ["PG_SOURCE_PASSWORD"]
    conn = psycopg.connect(**kwargs)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, customer text NOT NULL, "
                 "amount numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
    conn.commit()

    def execute(sql: str, params: tuple[Any, ...]) -> None:
        conn.execute(sql.replace("?", "%s"), params)

    return conn, execute, conn.commit


def _connect_mysql(table: str) -> tuple[Any, Callable[[str, tuple[Any, ...]], None], Callable[[], None]]:
    import pymysql

    conn = pymysql.connect(
        host=_env("MYSQL_SOURCE", "HOST"), port=int(_env("MYSQL_SOURCE", "PORT", "3306")),
        user=_env("MYSQL_SOURCE", "USER", "root"), password=os.environ.get("MYSQL_SOURCE_PASSWORD", ""),
        database=_env("MYSQL_SOURCE", "DB", "cdc_source"), charset="utf8mb4", connect_timeout=10,
        autocommit=False,
    )
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, "
                    "customer VARCHAR(100) NOT NULL, amount DECIMAL(12,2) NOT NULL, "
                    "updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) "
                    "DEFAULT CHARSET=utf8mb4")
    conn.commit()

    def execute(sql: str, params: tuple[Any, ...]) -> None:
        with conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)

    return conn, execute, conn.commit


def run(kind: str, table: str, rate: float, transactions: int | None, seed: int | None) -> int:
    """Run the workload; returns the number of committed transactions."""
    connect = _connect_pg if kind == "postgres" else _connect_mysql
    conn, execute, commit = connect(table)
    rnd = random.Random(seed)
    # Keys from the clock, so a restarted workload does not collide with its earlier rows.
    next_id = int(time.time() * 1000) * 1000
    live: list[int] = []
    done = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    try:
        while not _stop and (transactions is None or done < transactions):
            started = time.monotonic()
            r = rnd.random()
            if r < 0.6 or len(live) < 10:
                execute(f"INSERT INTO {table} (id, customer, amount) VALUES (?, ?, ?)",
                        (next_id, f"customer {next_id % 97}", rnd.randint(0, 10**6) / 100))
                live.append(next_id)
                next_id += 1
            elif r < 0.9:
                execute(f"UPDATE {table} SET amount = amount + 1 WHERE id = ?", (rnd.choice(live),))
            else:
                key = live.pop(rnd.randrange(len(live)))
                execute(f"DELETE FROM {table} WHERE id = ?", (key,))
            commit()
            done += 1
            pause = interval - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
    finally:
        conn.close()
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("kind", choices=["postgres", "mysql"])
    parser.add_argument("--table", default="demo_orders", help="table to write (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=20.0, help="transactions per second (0: unpaced)")
    parser.add_argument("--transactions", type=int, default=None, help="stop after this many")
    parser.add_argument("--seed", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.table.replace("_", "").isalnum():
        parser.error("--table: letters, digits and _ only")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done = run(args.kind, args.table, args.rate, args.transactions, args.seed)
    print(f"workload: {done} transactions on {args.table}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
