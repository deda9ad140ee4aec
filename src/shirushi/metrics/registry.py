"""The metric definitions, in one place, and the multiprocess set-up. No network I/O.

prometheus_client's multiprocess mode keeps each process's values in memory-mapped files in
one directory (`data_dir/metrics`), named in `PROMETHEUS_MULTIPROC_DIR`. The variable must be
set before prometheus_client is first imported (it picks its value class then), so `serve`
calls `prepare_directory` first thing and its children inherit the environment. A process
without the variable (a CLI command) counts into throwaway in-process values.

Metric objects are created on first use (`metrics()`), so that importing this module costs
nothing in processes that never count.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any, NamedTuple

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Responder latency buckets (seconds): answers from memory take microseconds, a Redis round
# trip well under a millisecond, a stalled Redis up to `redis.timeout`.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def prepare_directory(path: Path) -> None:
    """Start a fresh multiprocess directory (values of an earlier run would be summed in)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    os.environ[ENV] = str(path)


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def mark_process_dead(pid: int) -> None:
    """A worker exited: its live gauges stop counting (counters keep their totals)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics(NamedTuple):
    ocsp_requests: Any
    ocsp_latency: Any
    l1_lookups: Any
    redis_errors: Any
    redis_reconnects: Any
    certificates_issued: Any
    revocations: Any
    revocation_propagation: Any
    signatures: Any
    crls_published: Any
    live_signing: Any


_lock = threading.Lock()
_metrics: Metrics | None = None


def metrics() -> Metrics:
    """The metric objects, made once per process (threads may ask first at the same moment)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _make()
    return _metrics


def _make() -> Metrics:
    from prometheus_client import Counter, Histogram

    return Metrics(
        ocsp_requests=Counter(
            "shirushi_ocsp_requests",
            "OCSP requests answered, by HTTP method, OCSP outcome, HTTP status and certificate status",
            ["method", "outcome", "code", "cert_status"],
        ),
        ocsp_latency=Histogram(
            "shirushi_ocsp_request_duration_seconds",
            "Time from a complete request to its answer being written, in the responder worker",
            buckets=LATENCY_BUCKETS,
        ),
        l1_lookups=Counter(
            "shirushi_ocsp_l1_lookups", "Responder in-process cache lookups, by result (hit, miss)", ["result"]
        ),
        redis_errors=Counter("shirushi_redis_errors", "Redis commands of a responder that failed or timed out"),
        redis_reconnects=Counter("shirushi_redis_reconnects", "Redis connections a responder (re)established"),
        certificates_issued=Counter("shirushi_certificates_issued", "Certificates issued"),
        revocations=Counter("shirushi_revocations", "Certificates revoked, by RFC 5280 reason", ["reason"]),
        revocation_propagation=Histogram(
            "shirushi_revocation_propagation_seconds",
            "From a revocation's commit to its OCSP response written to Redis and announced to responders",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        ),
        signatures=Counter("shirushi_signatures", "Signatures made, by what was signed", ["signer"]),
        crls_published=Counter("shirushi_crls_published", "CRLs published, by issuer", ["issuer"]),
        live_signing=Counter(
            "shirushi_live_sign_requests",
            "Responses the responders asked `serve` for on a cache miss (live path), by outcome: signed, "
            "found (in Redis by then), unknown (no such unexpired certificate), over_budget (ocsp.live_rate; "
            "tryLater, signed by the refill first), failed (tryLater), not_mine (another issuer)",
            ["outcome"],
        ),
    )


def count_signatures(signer: str) -> Any:
    """The signature counter of one key, by its name; `.inc()` after each signature."""
    return metrics().signatures.labels(signer)
