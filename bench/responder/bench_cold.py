"""Never dark: cold `serve` and a flushed Redis under relying-party traffic, 100,000 certificates.

Makes a data directory (`shirushi init`), seeds N certificates straight into the SQLite store
(tests/support/seed.py) and marks a fraction revoked with one SQL UPDATE (a benchmark loader:
the status services read only the serial, dates and revocation columns), then:

1. **signer rate** (the reference): `sign_rows` in this process with the data directory's OCSP
   signer for `--sign-seconds`, both CertID algorithms per certificate as the refill signs them:
   responses per second on one core, times the presign workers;
2. **cold start**: `serve` on an empty embedded Redis; from the start, a request for a random
   known serial every 50 ms until one is answered correctly (time to first correct answer, and
   to the port opening); then relying-party traffic at `--rate` requests/s for `--seconds`
   while the start-up refill runs behind the open port; then the refill's own figure (its log
   line: responses and seconds) -> refill rate vs the signer rate;
3. **flushed**: once the refill has finished, FLUSHALL and the same traffic again.

With `--rate 0` there is no traffic and no flushed phase: the refill alone, next to the signer.

Traffic: each request picks a random seeded serial and a random CertID hash (3 SHA-1 : 1
SHA-256), GET. A `tryLater` is retried every 100 ms, as a stapling server would, until a correct
answer or 5 s. Every answer is checked: OCSP status successful, serial and certificate status as
seeded (good or revoked), the signature verified on one answer in ten. Reported: the fraction of
requests answered correctly within 1 s of their first attempt, p50/p99 of that time, and answers
that were wrong (must be 0). The live-signing counts come from `serve`'s "live signing" log line.

    .venv/bin/python bench/responder/bench_cold.py [--certs 100000] [--rate 300] [--seconds 15] \
        [--signer-key ecdsa-p256]

Only 127.0.0.1 and unix sockets; every process started here is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
import redis  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402

from shirushi import config  # noqa: E402
from shirushi.asn1.keys import certid_hashes  # noqa: E402
from shirushi.backend import Backend  # noqa: E402
from shirushi.presign.presigner import sign_rows  # noqa: E402
from shirushi.signing import verify  # noqa: E402
from support.seed import seed_certificates  # noqa: E402
from support.serving import Site  # noqa: E402

_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # as tests/support/seed.py writes times


def revoke_fraction(data: Path, serials: list[int], fraction: float) -> set[int]:
    """Mark `fraction` of the seeded serials revoked (superseded, an hour ago), in one UPDATE."""
    revoked = set(random.sample(serials, int(len(serials) * fraction)))
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime(_FORMAT)
    with sqlite3.connect(data / "shirushi.db") as db:
        db.executemany(
            "update certificates set revoked_at = ?, revocation_reason = 'superseded',"
            " status_version = status_version + 1 where serial = ?",
            [(at, format(s, "x")) for s in revoked],
        )
    return revoked


def signer_rate(site: Site, seconds: float) -> tuple[float, int]:
    """Responses per second `sign_rows` makes on one core here; and the presign workers."""
    env = {k: v for k, v in site.env.items() if k.startswith("SHIRUSHI_")}
    settings = config.load(None, environ=env)
    backend = Backend(settings)
    try:
        presigner = backend.presigner
        ctx = presigner.context()
        rows = next(backend.store.statuses(ctx.issuer_id, valid_at=dt.datetime.now(dt.UTC), batch=200))
        made, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            entries, _ = sign_rows(rows, ctx, presigner.signer, dt.datetime.now(dt.UTC))
            made += len(entries)
        return made / (time.monotonic() - started), presigner.workers
    finally:
        backend.close()


class Client:
    """GETs for seeded serials, checked against what was seeded."""

    def __init__(self, site: Site, serials: list[int], revoked: set[int]) -> None:
        self.site = site
        self.serials = serials
        self.revoked = revoked
        self.issuer = x509.load_pem_x509_certificates((site.data / "certs" / "issuers.pem").read_bytes())[0]
        self.hashes = {alg: certid_hashes(self.issuer, alg) for alg in ("sha1", "sha256")}
        self.checked = 0
        self.try_later = 0

    def url(self, serial: int, alg: str) -> str:
        name_hash, key_hash = self.hashes[alg]
        algorithm = hashes.SHA1() if alg == "sha1" else hashes.SHA256()
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, serial, algorithm)
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        return self.site.ocsp_url + urllib.parse.quote(base64.b64encode(der).decode(), safe="")

    def judge(self, serial: int, body: bytes) -> str:
        """ "ok", "try_later", or what was wrong."""
        response = ocsp.load_der_ocsp_response(body)
        if response.response_status == ocsp.OCSPResponseStatus.TRY_LATER:
            return "try_later"
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return response.response_status.name
        expected = ocsp.OCSPCertStatus.REVOKED if serial in self.revoked else ocsp.OCSPCertStatus.GOOD
        if response.serial_number != serial or response.certificate_status != expected:
            return f"wrong status {response.certificate_status.name}"
        self.checked += 1
        if self.checked % 10 == 0:
            key = response.certificates[0].public_key()
            assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
            verify(key, response.signature, response.tbs_response_bytes)  # raises if it is not ours
        return "ok"

    async def until_correct(self, session: aiohttp.ClientSession, give_up: float = 5.0) -> tuple[float | None, str]:
        serial = random.choice(self.serials)
        url = self.url(serial, "sha256" if random.random() < 0.25 else "sha1")
        started = time.monotonic()
        verdict = "no answer"
        while time.monotonic() - started < give_up:
            try:
                async with session.get(url) as resp:
                    body = await resp.read()
                verdict = self.judge(serial, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                verdict = f"error {type(exc).__name__}"
            if verdict == "try_later":
                self.try_later += 1
            if verdict == "ok":
                return time.monotonic() - started, verdict
            if verdict != "try_later" and not verdict.startswith("error"):
                return None, verdict  # a wrong answer: counted, never retried into a right one
            await asyncio.sleep(0.1)
        return None, verdict

    async def traffic(self, rate: float, seconds: float) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=64)
        results: list[tuple[float | None, str]] = []
        self.try_later = 0
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = []
            began = time.monotonic()
            n = int(rate * seconds)
            for i in range(n):
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self.until_correct(session)))
            results = list(await asyncio.gather(*tasks))
        times = [t for t, _ in results if t is not None]
        failed = [v for t, v in results if t is None]
        wrong = [v for v in failed if v not in ("try_later", "no answer") and not v.startswith("error")]
        within = sum(1 for t in times if t <= 1.0)
        return {
            "requests": len(results),
            "within_1s": within / len(results),
            "correct_eventually": len(times) / len(results),
            "p50_s": statistics.median(times) if times else None,
            "p99_s": sorted(times)[int(len(times) * 0.99) - 1] if len(times) >= 100 else None,
            "max_s": max(times) if times else None,
            "try_later_answers_seen": self.try_later,
            "wrong": len(wrong),
            "wrong_examples": wrong[:5],
        }


def last_log(site: Site, event: str) -> dict[str, Any] | None:
    found = None
    for line in site.log().splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            found = json.loads(line)
    return found


def full_run(site: Site) -> dict[str, Any] | None:
    for line in site.log().splitlines():
        if '"run": "full"' in line:
            return dict(json.loads(line))
    return None


async def first_correct(client: Client, started: float, limit: float = 120) -> float:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() - started < limit:
            serial = random.choice(client.serials)
            try:
                async with session.get(client.url(serial, "sha1")) as resp:
                    if client.judge(serial, await resp.read()) == "ok":
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError("no correct answer")


def spy(site: Site, out: Path, seconds: float, children: bool = False) -> subprocess.Popen[bytes]:
    assert site.proc is not None
    command = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record", "--native"]
    command += ["--subprocesses"] if children else []
    command += ["--threads", "--format", "raw", "--rate", "200", "--pid", str(site.proc.pid)]
    command += ["--duration", str(int(seconds)), "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--revoked", type=float, default=0.2)
    parser.add_argument(
        "--rate",
        type=float,
        default=300.0,
        help="relying-party requests per second; 0: no traffic and no flushed phase (the refill alone)",
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sign-seconds", type=float, default=3.0)
    parser.add_argument("--live-rate", default="", help="ocsp.live_rate (default: the configured default)")
    parser.add_argument("--keep-log", type=Path, help="copy serve's log here at the end")
    parser.add_argument("--signer-key", default="", help="ocsp.signer_key: rsa-2048 (default) or ecdsa-p256")
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        type=Path,
        help="record serve with py-spy (native frames, every thread) during the flushed traffic: "
        "collapsed stacks to OUT (`pip install py-spy`)",
    )
    parser.add_argument(
        "--py-spy-refill",
        metavar="OUT",
        type=Path,
        help="the same for serve and its presign workers during the first --seconds of the start-up refill",
    )
    args = parser.parse_args()
    out: dict[str, Any] = {"certs": args.certs, "revoked": args.revoked, "rate": args.rate, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        extra = {"SHIRUSHI_LOG__FORMAT": "json"}
        if args.live_rate:
            extra["SHIRUSHI_OCSP__LIVE_RATE"] = args.live_rate
        if args.signer_key:
            extra["SHIRUSHI_OCSP__SIGNER_KEY"] = args.signer_key
            out["signer_key"] = args.signer_key
        site = Site(Path(tmp), **extra)
        assert site.cli("init").returncode == 0
        t = time.monotonic()
        serials = seed_certificates(site.data, args.certs)
        revoked = revoke_fraction(site.data, serials, args.revoked)
        out["seed_s"] = round(time.monotonic() - t, 1)
        rate, workers = signer_rate(site, args.sign_seconds)
        out["signer_responses_per_s_one_core"] = round(rate)
        out["presign_workers"] = workers
        client = Client(site, serials, revoked)
        try:
            started = time.monotonic()
            site.start(wait=False)
            out["cold_first_correct_s"] = round(asyncio.run(first_correct(client, started)), 2)
            refill_spy = spy(site, args.py_spy_refill, args.seconds, children=True) if args.py_spy_refill else None
            if args.rate > 0:
                out["cold_traffic"] = asyncio.run(client.traffic(args.rate, args.seconds))
            deadline = time.monotonic() + 3600
            while full_run(site) is None:
                if time.monotonic() > deadline or (site.proc is not None and site.proc.poll() is not None):
                    raise RuntimeError(site.log()[-3000:])
                time.sleep(0.5)
            run = full_run(site)
            assert run is not None
            if refill_spy is not None:
                refill_spy.wait(timeout=60)
            out["refill_done_after_start_s"] = round(time.monotonic() - started, 1)
            responses = 2 * run["responses"]  # both CertID hash algorithms per certificate
            out["refill"] = {
                "certificates": run["responses"],
                "seconds": run["seconds"],
                "responses_per_s": round(responses / run["seconds"]),
                "vs_signer_x_workers": round(responses / run["seconds"] / (rate * workers), 2),
            }
            out["live_after_cold"] = last_log(site, "live signing")
            with redis.Redis(unix_socket_path=str(site.data / "redis.sock"), socket_timeout=10) as r:
                keys = r.dbsize()
                used = int(r.info("memory")["used_memory"])
                out["redis_keys_before_flush"] = keys
                out["redis_used_memory_mib"] = round(used / 2**20, 1)
                out["redis_bytes_per_key"] = round(used / max(1, keys))
                if args.rate > 0:
                    r.flushall()
            if args.rate > 0:
                recorder = spy(site, args.py_spy, args.seconds) if args.py_spy is not None else None
                out["flushed_traffic"] = asyncio.run(client.traffic(args.rate, args.seconds))
                if recorder is not None:
                    recorder.wait(timeout=60)
                time.sleep(1.5)
                out["live_total"] = last_log(site, "live signing")
        finally:
            if site.proc is not None:
                site.stop()
            if args.keep_log:
                shutil.copyfile(site.root / "serve.log", args.keep_log)
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out["loadavg"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
