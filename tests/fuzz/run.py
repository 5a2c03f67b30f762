"""Run the fuzz targets of tests/fuzz/targets.py for a fixed time.

    .venv/bin/python -m tests.fuzz.run --all --seconds 600      # make fuzz
    .venv/bin/python -m tests.fuzz.run --target pgoutput --seconds 30
    .venv/bin/python -m tests.fuzz.run --all --seconds 20 --jobs 2  # two at a time

With atheris (PyPI; Linux x86_64 wheels) each target runs in its own process
under libFuzzer, coverage-guided by atheris' instrumentation of the Python
code it imports (``cdc``, ``connectors``, the targets). The C extensions are
built by gcc without libFuzzer's coverage hooks, so their branches do not
guide the search; they are reached through the same inputs, and the
sanitizer build (``make sanitize``) turns any memory error in them into a
crash. Without atheris the same targets run under a seeded random mutator
(bit flips, truncation, insertion, splicing of seeds).

Each target starts from its seed corpus (``corpus/<target>``, read only) and
keeps what it learns in ``.cdc-local/fuzz/<target>/corpus``; an input that
fails is written to ``.cdc-local/fuzz/<target>/crash-*`` and the run exits 1.
Make it a regression test: copy it to ``corpus/<target>/regress-<what>``
(the corpus test replays every file) and, when the fix belongs to someone
else, add an ``xfail(strict=True)`` test to ``test_fuzz_regressions.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMES = ("framing", "avro_envelope", "avro_key", "pgoutput", "rowimage", "text_rows", "copy_run")


def work_dir(target: str) -> Path:
    base = Path(os.environ.get("CDC_FUZZ_DIR", ROOT / ".cdc-local" / "fuzz"))
    d = base / target
    (d / "corpus").mkdir(parents=True, exist_ok=True)
    return d


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("CDC_FUZZ_ENGINE", "atheris") == "atheris"


def run_atheris(target: str, seconds: int) -> None:
    """libFuzzer main loop in this process; exits (non-zero on a finding)."""
    import atheris

    with atheris.instrument_imports(include=["cdc", "connectors", "tests.fuzz"]):
        from tests.fuzz import targets
    fn = targets.TARGETS[target]
    d = work_dir(target)

    def one(data: bytes) -> None:
        fn(data)

    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-max_len=8192",
        "-print_final_stats=1",
        f"-artifact_prefix={d}/",
        str(d / "corpus"),
        str(HERE / "corpus" / target),
    ]
    atheris.Setup(argv, one)
    atheris.Fuzz()


def _mutate(rnd: random.Random, seeds: list[bytes]) -> bytes:
    b = bytearray(rnd.choice(seeds))
    for _ in range(rnd.randint(1, 6)):
        op = rnd.random()
        if op < 0.4 and b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif op < 0.55 and b:
            b[rnd.randrange(len(b))] = rnd.choice((0, 1, 0x7F, 0x80, 0xFF, rnd.randrange(256)))
        elif op < 0.7 and b:
            del b[rnd.randrange(len(b)) :]
        elif op < 0.85:
            i = rnd.randrange(len(b) + 1)
            b[i:i] = rnd.randbytes(rnd.randint(1, 16))
        else:
            other = rnd.choice(seeds)
            i = rnd.randrange(len(b) + 1)
            j = rnd.randrange(len(other) + 1)
            b = b[:i] + other[j:]
    return bytes(b)


def run_random(target: str, seconds: int, seed: int) -> int:
    """The fallback engine: seeded random mutation of the seeds; returns an exit code."""
    from tests.fuzz import targets

    fn = targets.TARGETS[target]
    d = work_dir(target)
    seeds = [p.read_bytes() for p in targets.seeds(target)]
    seeds += [p.read_bytes() for p in sorted((d / "corpus").iterdir()) if p.is_file()]
    seeds = [s for s in seeds if s] or [b"\0"]
    rnd = random.Random(seed)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rnd, seeds)
        runs += 1
        try:
            fn(data)
        except Exception:
            path = d / f"crash-random-{seed}-{runs}"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"{target}: finding after {runs} runs, input saved to {path}", file=sys.stderr)
            return 1
    print(f"{target}: {runs} runs in {seconds} s (random mutator, seed {seed}), no finding")
    return 0


def _run_all(seconds: int, seed: int, jobs: int) -> int:
    """Every target for ``seconds`` each, ``jobs`` at a time; the first failure's code.

    One job: each target's output goes straight through. Several: each
    target writes to ``<work dir>/run.log``, printed whole when it ends, so
    the outputs do not interleave. The time per target is the same either
    way; jobs only shorten the wall time on a machine with free cores.
    """
    rc = 0
    waiting = list(NAMES)
    running: list[tuple[str, subprocess.Popen[bytes], float, Path | None]] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            name = waiting.pop(0)
            cmd = [sys.executable, "-m", "tests.fuzz.run", "--target", name,
                   "--seconds", str(seconds), "--seed", str(seed)]
            log = work_dir(name) / "run.log" if jobs > 1 else None
            if log is None:
                proc = subprocess.Popen(cmd, cwd=ROOT)
            else:
                with log.open("wb") as out:  # the child keeps its own descriptor
                    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            running.append((name, proc, time.monotonic(), log))
        for job in list(running):
            name, proc, started, log = job
            code = proc.poll()
            if code is None:
                continue
            running.remove(job)
            if log is not None:
                sys.stdout.write(log.read_text(errors="replace"))
            print(f"fuzz {name}: exit {code} after {time.monotonic() - started:.0f} s",
                  flush=True)
            rc = rc or code
        if running:
            time.sleep(0.2)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description="Fuzz the parsers of untrusted bytes.")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", choices=NAMES)
    which.add_argument("--all", action="store_true", help="every target, one after the other")
    ap.add_argument("--seconds", type=int, default=60, help="per target")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random engine only")
    ap.add_argument("--jobs", type=int, default=1,
                    help="with --all: targets fuzzed at once (each is one process, one core)")
    args = ap.parse_args()
    if args.all:
        return _run_all(args.seconds, args.seed, max(1, args.jobs))
    if _atheris_available():
        run_atheris(args.target, args.seconds)
        return 0
    print("atheris not installed: random mutation engine", file=sys.stderr)
    return run_random(args.target, args.seconds, args.seed)


if __name__ == "__main__":
    sys.exit(main())
