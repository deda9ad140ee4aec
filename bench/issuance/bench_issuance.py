"""Issuance rate through the API next to pkilint alone linting the same certificates.

In one run, on a fresh CA in a temporary directory (SQLite, file keys, embedded Redis):
1. `shirushi serve` is started; COUNT certificates are issued through `POST /api/v1/certificates`
   by CLIENTS concurrent clients (keep-alive connections, CSRs made beforehand); rate and
   latency percentiles are measured, every answer is checked (201, a certificate that parses);
2. pkilint alone (its serverauth validator built once in each of PROCESSES worker processes,
   as its own CLI does for one process) lints the DER of exactly those certificates; the workers
   are started and warmed before the clock starts, as the server's pool is;
rounds of (1, 2) are interleaved so both see the same machine load, and the medians compared.

    .venv/bin/python bench/issuance/bench_issuance.py [--count 400] [--clients 8] [--rounds 2]

Does I/O: temporary files, subprocesses, loopback HTTP.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TOKEN = "bench-token"
SUBJECT = [
    x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
    x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"),
    x509.NameAttribute(NameOID.LOCALITY_NAME, "Chiyoda-ku"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example KK"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_csrs(count: int, keys: int = 16) -> list[bytes]:
    """`count` CSRs with distinct names over a few keys (key generation is not what is measured)."""
    pool = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(keys)]
    csrs = []
    for i in range(count):
        name = f"host{i}.example.jp"
        builder = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([*SUBJECT, x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        )
        csrs.append(builder.sign(pool[i % keys], hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return csrs


class Server:
    """`shirushi serve` on free loopback ports with its own data directory."""

    def __init__(self, root: Path) -> None:
        ocsp, repo, self.api_port = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
        self.env.update(
            SHIRUSHI_DATA_DIR=str(root / "data"),
            SHIRUSHI_OCSP__LISTEN=f"127.0.0.1:{ocsp}",
            SHIRUSHI_OCSP__URL=f"http://127.0.0.1:{ocsp}/",
            SHIRUSHI_REPOSITORY__LISTEN=f"127.0.0.1:{repo}",
            SHIRUSHI_REPOSITORY__URL=f"http://127.0.0.1:{repo}/",
            SHIRUSHI_CA__CPS_URI=f"http://127.0.0.1:{repo}/cps",
            SHIRUSHI_API__LISTEN=f"127.0.0.1:{self.api_port}",
            SHIRUSHI_API__TOKEN=TOKEN,
        )
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "shirushi", *args], env=self.env, check=True, capture_output=True)

    def start(self) -> None:
        self.cli("init")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shirushi", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("serve did not start in 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> dict[int, str]:
    """`pid` and its descendants, each with its command line's last word (what it runs)."""
    found = {pid: "serve"}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            for child in (task / "children").read_text().split():
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                found[int(child)] = "responder" if b"responder" in cmd else "lint worker"
                todo.append(int(child))
    return found


def cpu_by_role(pid: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for child, role in process_tree(pid).items():
        with contextlib.suppress(FileNotFoundError):
            totals[role] = totals.get(role, 0.0) + cpu_seconds(child)
    return totals


def issue_all(port: int, csrs: list[bytes], clients: int) -> tuple[float, list[float], list[bytes]]:
    """Issue every CSR through the API from `clients` threads; (seconds, latencies, DERs)."""
    lock = threading.Lock()
    queue = list(reversed(csrs))
    latencies: list[float] = []
    ders: list[bytes] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue or errors:
                    break
                csr = queue.pop()
            body = json.dumps({"csr": csr.decode()})
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/certificates", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != 201:
                with lock:
                    errors.append(f"{response.status} {data[:200]!r}")
                break
            cert = x509.load_pem_x509_certificate(json.loads(data)["certificate"].encode())
            with lock:
                latencies.append(elapsed)
                ders.append(cert.public_bytes(serialization.Encoding.DER))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors or len(ders) != len(csrs):
        raise SystemExit(f"issuance failed: {errors[:3]} ({len(ders)} of {len(csrs)} issued)")
    return seconds, latencies, ders


# -- pkilint alone -------------------------------------------------------------------------

_validator: Any = None


def _pkilint_init() -> None:
    global _validator
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate

    kind = serverauth_constants.CertificateType.OV_FINAL_CERTIFICATE
    _validator = (
        kind,
        certificate.create_pkix_certificate_validator_container(
            serverauth.create_decoding_validators(), serverauth.create_validators(kind)
        ),
        serverauth.create_serverauth_finding_filters(kind),
    )


def _pkilint_one(der: bytes) -> int:
    from pkilint import finding_filter, loader

    _kind, validator, filters = _validator
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "cert")
    results, _ = finding_filter.filter_results(filters, validator.validate(document.root))
    return sum(len(r.finding_descriptions) for r in results)


def _ready() -> int:
    return os.getpid()


def lint_all(pool: concurrent.futures.ProcessPoolExecutor, ders: list[bytes]) -> float:
    start = time.perf_counter()
    list(pool.map(_pkilint_one, ders, chunksize=1))
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=400, help="certificates per round (default 400)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent API clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of API and pkilint")
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)), help="pkilint processes")
    args = parser.parse_args()

    print(f"making {args.count} CSRs ...", file=sys.stderr)
    csrs = make_csrs(args.count)
    pool = concurrent.futures.ProcessPoolExecutor(
        args.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_pkilint_init
    )
    for future in [pool.submit(_ready) for _ in range(args.processes)]:
        future.result()
    api: list[tuple[float, list[float]]] = []
    alone: list[float] = []
    cpu_ms: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="shirushi-bench-issuance-") as tmp:
        server = Server(Path(tmp))
        print("starting shirushi serve ...", file=sys.stderr)
        server.start()
        try:
            issue_all(server.api_port, csrs[: args.clients * 2], args.clients)  # warm-up, not counted
            for round_ in range(args.rounds):
                assert server.proc is not None
                before, client_before = cpu_by_role(server.proc.pid), time.process_time()
                seconds, latencies, ders = issue_all(server.api_port, csrs, args.clients)
                after, client_after = cpu_by_role(server.proc.pid), time.process_time()
                cpu = {role: after[role] - before.get(role, 0.0) for role in after}
                cpu["bench clients"] = client_after - client_before
                cpu_ms.append({role: 1000 * value / args.count for role, value in cpu.items()})
                api.append((seconds, latencies))
                alone.append(lint_all(pool, ders))
                print(
                    f"round {round_ + 1}: API {args.count / seconds:.1f}/s, pkilint {args.count / alone[-1]:.1f}/s",
                    file=sys.stderr,
                )
        finally:
            server.stop()
            pool.shutdown()
    api_rates = [args.count / s for s, _ in api]
    lint_rates = [args.count / s for s in alone]
    latencies = [lat for _, lats in api for lat in lats]
    api_rate, lint_rate = statistics.median(api_rates), statistics.median(lint_rates)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"{args.count} certificates per round, {args.rounds} round(s), {args.clients} API clients")
    print()
    print("| what | processes | rate /s (median) | rounds | p50 latency | p90 latency |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    print(
        f"| pkilint alone, same certificates | {args.processes} | {lint_rate:.1f} | "
        f"{', '.join(f'{r:.1f}' for r in lint_rates)} | - | - |"
    )
    print(
        f"| issuance through the API, {args.clients} clients | serve | {api_rate:.1f} | "
        f"{', '.join(f'{r:.1f}' for r in api_rates)} | {percentile(latencies, 0.5) * 1000:.0f} ms | "
        f"{percentile(latencies, 0.9) * 1000:.0f} ms |"
    )
    print()
    print(f"ratio API / pkilint alone: {api_rate / lint_rate:.2f}")
    print()
    print("CPU per issued certificate during the API rounds (ms, median over rounds):")
    for role in sorted(cpu_ms[0]):
        print(f"- {role}: {statistics.median(c.get(role, 0.0) for c in cpu_ms):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
