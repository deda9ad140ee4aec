"""The stateless OCSP responder: the hot path (hot-path rules: docs/standards.md).

It holds no keys and no database; it needs only Redis (filled by the presigner) and the issuing
CA certificates. Many can run side by side on one address (SO_REUSEPORT).

    run(settings, ready=None, options=None) -> int   supervise `ocsp.workers` worker processes

`python -m shirushi.responder [--config FILE]` runs it on its own. This package must stay light:
it never imports the signing seam, PKCS#11, the database layer or Starlette (a test checks).
"""

from __future__ import annotations

from shirushi.responder.routing import Options
from shirushi.responder.supervisor import run

__all__ = ["Options", "run"]
