"""Run one sink worker as its own process (for kill -9 tests).

    python -m tests.integration.sink.run_worker CONFIG SINK_NAME

Like ``cdc sink CONFIG --name SINK_NAME`` but with the dialect given
directly (the connector registry may not expose sink dialects yet), and it
prints ``batch <applied>`` after each committed batch so a test can time a
kill. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from cdc.config import load_config
from cdc.sink.applier import ApplyResult
from cdc.sink.cli import build_worker
from tests.integration.sink.helpers import dialect_for


def main() -> int:
    config_path, name = Path(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    kind = config.sink(name).kind
    worker = build_worker(config, name, stop=stop, dialect=dialect_for(kind))

    def on_batch(result: ApplyResult) -> None:
        print(f"batch {result.applied}", flush=True)

    worker._on_batch = on_batch
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
