"""Signing throughput: OCSP responses signed per second per core, software key vs SoftHSM2,
RSA-2048 vs ECDSA P-256 delegated signer (`ocsp.signer_key`).

Builds real responses with `shirushi.asn1.ocsp.build_response` (the presigner's work item)
for a fixed time, in 1 and in 2 worker processes (forked after the parent has logged in,
as the presigner does), and in 1 process with 2 threads; measures raw `Signer.sign` too;
runs `openssl speed -seconds 3 rsa2048` and `... ecdsap256` in the same run as the outside
references and prints the ratios; and the size of a response, of its Redis record, and the Redis
memory one record takes (records written into a scratch redis-server). The SoftHSM2 token lives
in a temporary directory made by tests/support/softhsm.py.
Does I/O: temporary files, subprocesses, the PKCS#11 module.

    .venv/bin/python bench/signing/bench_signing.py [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import redis as redis_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import support.softhsm as softhsm  # noqa: E402  (tests/support/softhsm.py, found through the path set just above)
from shirushi.asn1.ocsp import IssuerHashes, Status, build_response  # noqa: E402
from shirushi.cache.embedded import EmbeddedRedis  # noqa: E402
from shirushi.cache.records import HEADER_SIZE, Record, response_key  # noqa: E402
from shirushi.layout import Layout  # noqa: E402
from shirushi.signing import ECDSA_P256, PublicKey, Signer, SignerKey  # noqa: E402
from shirushi.signing.pkcs11 import PKCS11KeyStore  # noqa: E402
from shirushi.signing.software import SoftwareSigner  # noqa: E402

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def certificate(
    cn: str, public: PublicKey, issuer: x509.Name | None, signer: Signer, ocsp: bool = False
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=not ocsp, path_length=None), critical=True)
    )
    if ocsp:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(SignerKey(signer), hashes.SHA256())


class Work:
    """One signer and everything build_response needs; `one(i)` makes response number i."""

    def __init__(self, signer: Signer, issuer: x509.Certificate, signer_cert: x509.Certificate):
        self.signer = signer
        self.hashes = IssuerHashes.of(issuer, "sha1")
        self.signer_cert = signer_cert

    def ocsp(self, i: int) -> bytes:
        return build_response(
            issuer=self.hashes,
            serial=0x1000 + i,
            status=Status(),
            this_update=NOW,
            next_update=NOW + dt.timedelta(days=4),
            produced_at=NOW,
            signer_cert=self.signer_cert,
            signer=self.signer,
        )

    def raw(self, i: int) -> None:
        self.signer.sign(b"%032d" % i)


@dataclasses.dataclass(frozen=True)
class Rate:
    """One measurement: signatures per wall-clock second, and per CPU-second used."""

    wall: float
    cpu: float


def loop(fn: Callable[[int], None], seconds: float) -> tuple[int, float, float]:
    """Run `fn` for `seconds`; returns (count, wall seconds, CPU seconds of this process)."""
    fn(0)  # warm up: in a fresh child this opens the module, logs in and finds the key
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn(count)
        count += 1
    return count, time.perf_counter() - start, time.process_time() - cpu


def _child(
    fn: Callable[[int], None],
    seconds: float,
    barrier: multiprocessing.synchronize.Barrier,
    queue: multiprocessing.Queue[tuple[int, float, float]],
) -> None:
    fn(0)
    barrier.wait()
    queue.put(loop(fn, seconds))


def in_processes(fn: Callable[[int], None], processes: int, seconds: float) -> Rate:
    """`processes` forked workers running `fn` at the same time."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    queue: multiprocessing.Queue[tuple[int, float, float]] = ctx.Queue()
    workers = [ctx.Process(target=_child, args=(fn, seconds, barrier, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a worker exited with status {w.exitcode}")
    wall = sum(count / elapsed for count, elapsed, _ in results)
    cpu = sum(count for count, _, _ in results) / sum(used for _, _, used in results)
    return Rate(wall, cpu)


def in_threads(fn: Callable[[int], None], threads: int, seconds: float) -> Rate:
    """`threads` threads of this process running `fn` at the same time."""
    results: list[tuple[int, float, float]] = []
    workers = [threading.Thread(target=lambda: results.append(loop(fn, seconds))) for _ in range(threads)]
    cpu = time.process_time()  # process-wide: covers every thread
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu
    return Rate(sum(count / elapsed for count, elapsed, _ in results), sum(count for count, _, _ in results) / cpu)


Runner = Callable[[Callable[[int], None], int, float], Rate]

# (figure, how it runs, Work method, processes or threads)
PLAN: tuple[tuple[str, Runner, str, int], ...] = (
    ("raw sign, 1 process", in_processes, "raw", 1),
    ("ocsp, 1 process", in_processes, "ocsp", 1),
    ("ocsp, 2 processes", in_processes, "ocsp", 2),
    ("ocsp, 1 process x 2 threads", in_threads, "ocsp", 2),
)


# Key type -> (openssl speed algorithm, the regex of its summary line: signs per second first).
SPEED = {
    "rsa-2048": ("rsa2048", r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)"),
    "ecdsa-p256": ("ecdsap256", r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)"),
}


def openssl_speed(key_type: str) -> tuple[float, str]:
    algorithm, pattern = SPEED[key_type]
    command = ["openssl", "speed", "-seconds", "3", algorithm]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    # openssl speed divides by user CPU time unless given -elapsed.
    match = re.search(pattern, out, flags=re.M)
    if match is None:
        raise RuntimeError(f"cannot read `{' '.join(command)}` output:\n{out}")
    return float(match.group(1)), " ".join(command)


def redis_bytes_per_record(works: dict[str, Work], directory: Path, count: int = 20_000) -> dict[str, float]:
    """Redis `used_memory` per record (key, value, TTL, dict entry), `count` records of each
    signer written into a scratch redis-server as the presigner writes them."""
    redis = EmbeddedRedis(Layout(directory))
    redis.start()
    try:
        client = redis_client.Redis(unix_socket_path=str(redis.socket_path), socket_timeout=10)
        per_record = {}
        for name, work in works.items():
            der = work.ocsp(0)
            value = Record(der, 0, 0, 0, bytes(32)).pack()
            client.flushall()
            before = int(client.info("memory")["used_memory"])
            pipe = client.pipeline(transaction=False)
            for i in range(count):
                pipe.set(response_key("0123456789abcdef", "sha1", 0x10_0000_0000_0000 + i), value, ex=4 * 86400)
            pipe.execute()
            per_record[name] = (int(client.info("memory")["used_memory"]) - before) / count
        return per_record
    finally:
        redis.stop()


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for tool, args in (("openssl", ["openssl", "version"]), ("softhsm2", ["softhsm2-util", "-v"])):
        versions[tool] = subprocess.run(args, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "cryptography": version("cryptography"),
        "python-pkcs11": version("python-pkcs11"),
        **versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; the best is kept, since other load only slows"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    seconds = args.seconds
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="shirushi-bench-") as tmp:
        hsm = softhsm.make_tokens(Path(tmp), labels=(softhsm.LABEL,))
        os.environ["SOFTHSM2_CONF"] = str(hsm.conf)

        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_signer = SoftwareSigner(ca_key, "bench-ca")
        ca_cert = certificate("Bench CA", ca_key.public_key(), None, ca_signer)
        store = PKCS11KeyStore(hsm.settings())
        signers: dict[str, tuple[str, Signer]] = {
            "software rsa-2048": ("rsa-2048", SoftwareSigner(rsa.generate_private_key(65537, 2048), "bench-ocsp")),
            "software p-256": ("ecdsa-p256", SoftwareSigner(ec.generate_private_key(ec.SECP256R1()), "bench-ocsp")),
            "softhsm2 rsa-2048": ("rsa-2048", store.generate("ocsp-signer")),
            "softhsm2 p-256": ("ecdsa-p256", store.generate("ocsp-signer-p256", ECDSA_P256)),
        }
        works = {
            name: Work(
                signer, ca_cert, certificate("Bench OCSP", signer.public_key(), ca_cert.subject, ca_signer, ocsp=True)
            )
            for name, (_, signer) in signers.items()
        }
        kinds = {name: kind for name, (kind, _) in signers.items()}
        # Redis first: its server is started before this process has threads (EmbeddedRedis.start).
        redis_memory = redis_bytes_per_record(works, Path(tmp) / "redis")
        sizes = {name: len(work.ocsp(1)) for name, work in works.items()}
        references = {kind: openssl_speed(kind) for kind in SPEED}
        rates: dict[str, dict[str, Rate]] = {name: {} for name in works}
        # Rounds interleave the figures so that a burst of outside load spreads over all;
        # the best of the rounds is kept, since outside load can only slow a run down.
        for _ in range(args.repeat):
            for name, work in works.items():
                for measure, runner, method, n in PLAN:
                    run = runner(getattr(work, method), n, seconds)
                    best = rates[name].get(measure, Rate(0.0, 0.0))
                    rates[name][measure] = Rate(max(best.wall, run.wall), max(best.cpu, run.cpu))

    info = machine()
    info["load average at start"] = load_at_start
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"signing throughput, best of {args.repeat} x {seconds:g} s per figure; machine: "
        + "; ".join(f"{k} {v}" for k, v in info.items())
    )
    for kind, (reference, command) in references.items():
        print(f"{command}: {reference:,.0f} {kind} signatures per CPU-second (user time)")
    print(f"{'signer':18} {'measure':28} {'per s':>7} {'per s/core':>10} {'per CPU-s':>10} {'vs openssl':>10}")
    for name, figures in rates.items():
        reference = references[kinds[name]][0]
        for measure, rate in figures.items():
            cores = 2 if "2 " in measure else 1
            print(
                f"{name:18} {measure:28} {rate.wall:7,.0f} {rate.wall / cores:10,.0f} "
                f"{rate.cpu:10,.0f} {rate.cpu / reference:9.2f}x"
            )
    one, two_p, two_t = "ocsp, 1 process", "ocsp, 2 processes", "ocsp, 1 process x 2 threads"
    print("ratios (per CPU-second unless said):")
    for backend in ("software", "softhsm2"):
        rsa_rates, ec_rates = rates[f"{backend} rsa-2048"], rates[f"{backend} p-256"]
        print(f"  {backend + ' p-256 / rsa-2048, ocsp:':36} {ec_rates[one].cpu / rsa_rates[one].cpu:.2f}")
        for kind, label in (("rsa-2048", "rsa-2048"), ("ecdsa-p256", "p-256")):
            hw, sw = rates[f"softhsm2 {label}"], rates[f"software {label}"]
            if backend == "softhsm2":
                print(f"  {'softhsm2 / software, ' + label + ', ocsp:':36} {hw[one].cpu / sw[one].cpu:.2f}")
            rate = rates[f"{backend} {label}"][one].cpu
            print(f"  {backend + ' ' + label + ' ocsp / openssl speed:':36} {rate / references[kind][0]:.2f}")
    for name, figures in rates.items():
        print(f"  {name + ' 2 processes / 1, wall:':36} {figures[two_p].wall / figures[one].wall:.2f}")
        print(f"  {name + ' 2 threads / 1, wall:':36} {figures[two_t].wall / figures[one].wall:.2f}")
    print(f"{'signer':18} {'response bytes':>15} {'record bytes':>13} {'redis bytes/record':>19}")
    for name, size in sizes.items():
        print(f"{name:18} {size:15,} {HEADER_SIZE + size:13,} {redis_memory[name]:19,.0f}")
    if args.json:
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "machine": info,
                    "openssl_speed_sign_per_cpu_s": {kind: ref for kind, (ref, _) in references.items()},
                    "redis_bytes_per_record": redis_memory,
                    "rates": {
                        name: {m: dataclasses.asdict(r) for m, r in figures.items()} for name, figures in rates.items()
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
