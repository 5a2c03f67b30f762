"""Process-wide logging: text for people, JSON lines for log pipelines.

Secrets are kept out by construction (config secrets are ``SecretStr`` and
DSNs are rendered without passwords); the redacting filter is a second line
of defence for driver messages that echo a connection string.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# A password is either a key=value setting or the part of a URL between the
# user's ``:`` and the ``@`` before the host. ``http://host:9000/path`` has no
# ``@``: its port is not a secret and stays readable.
_SECRET = re.compile(
    r"(password=|passwd=)([^\s&]+)|(://[^:/@\s]+:)([^@\s]+)(?=@)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(3)) + "***", text)


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
