"""One-shot registry setup: the default compatibility rule, through the registry's REST API.

docker-compose.yml runs it as ``registry-init`` before any worker starts: it
waits for the Confluent-compatible API, sets the global compatibility level
(``PUT /config``) and reads it back. Idempotent; exits 0 when the rule is in
place, 1 when the registry does not answer within ``--timeout`` or refuses.
Standard library only.

    python registry_init.py --url http://registry:8080/apis/ccompat/v7 --compatibility BACKWARD
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
          "FULL_TRANSITIVE", "NONE")


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None,
             auth: str | None = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def configure(url: str, level: str, timeout: float, auth: str | None = None) -> str:
    """Waits for the registry, sets the global level, returns the level it reports."""
    base = url.rstrip("/")
    deadline = time.monotonic() + timeout
    while True:
        try:
            _request(f"{base}/subjects", auth=auth)
            break
        except (urllib.error.URLError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code in (401, 403):
                raise SystemExit(f"registry-init: {base} refused the credentials ({e.code})") from e
            if time.monotonic() > deadline:
                raise SystemExit(f"registry-init: {base} not reachable after {timeout:.0f}s: {e}") from e
            time.sleep(1)
    _request(f"{base}/config", "PUT", {"compatibility": level}, auth=auth)
    got = _request(f"{base}/config", auth=auth)
    reported = str(got.get("compatibilityLevel") or got.get("compatibility") or "")
    if reported != level:
        raise SystemExit(f"registry-init: asked for {level}, the registry reports {reported or got!r}")
    return reported


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("SCHEMA_REGISTRY_URL"),
                        help="Confluent-compatible API base URL (default: $SCHEMA_REGISTRY_URL)")
    parser.add_argument("--compatibility", default="BACKWARD", choices=LEVELS)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the registry")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url or SCHEMA_REGISTRY_URL is required")
    user, password = os.environ.get("SCHEMA_REGISTRY_USER"), os.environ.get("SCHEMA_REGISTRY_PASSWORD")
    auth = f"{user}:{password}" if user and password else None
    level = configure(args.url, args.compatibility, args.timeout, auth)
    print(f"registry-init: global compatibility is {level}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
