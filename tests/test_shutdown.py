"""Stopping `serve` and `shirushi responder` at any moment, with real processes.

SIGTERM during the start-up presign of many certificates (seeded straight into the store; it
runs behind the open OCSP port, misses meanwhile are signed live) ends `serve` promptly with
status 0 and nothing left running; the next `serve` finishes the work.
SIGKILL, at start-up or while serving, leaves no redis-server, responder or signing worker
behind (they ask Linux for a parent-death signal). A revocation committed just before a stop
reaches OCSP and the CRL after the restart; `openssl ocsp` and `openssl crl` judge that.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from shirushi.cache import records
from support.seed import seed_certificates
from support.serving import Site, free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]

SEEDED = 10_000
STOP_BOUND = 10.0  # seconds: a generous correctness bound (docker stop waits 10 s)
ORPHAN_BOUND = 5.0


def issuer_id(site: Site) -> str:
    with sqlite3.connect(site.data / "shirushi.db") as db:
        return str(db.execute("select id from issuers where name = 'issuing-ca'").fetchone()[0])


def cache(site: Site) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(site.data / "redis.sock"), socket_timeout=5)


def wait_for_presign_in_progress(site: Site, at_least: int = 200) -> None:
    """Until the start-up presign has written some responses (and has not finished)."""
    deadline = time.monotonic() + 120
    complete = records.complete_key(issuer_id(site))
    while time.monotonic() < deadline:
        assert site.proc is not None and site.proc.poll() is None, site.log()
        try:
            with cache(site) as r:
                if r.dbsize() >= at_least:
                    assert not r.exists(complete), "the presign finished before the test could stop it"
                    return
        except redis.ConnectionError:
            pass  # the embedded redis-server is not up yet
        time.sleep(0.05)
    raise TimeoutError("the start-up presign did not begin")


def wait_until_gone(site: Site, bound: float) -> str:
    """Processes of the site still running after up to `bound` seconds ('' when none)."""
    deadline = time.monotonic() + bound
    while (left := site.processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill_all(site: Site) -> None:
    """After a failed test: nothing of this site may run on into the rest of the session."""
    if site.proc is not None:
        site.proc.kill()
        site.proc.wait()
        site.proc = None
    for line in site.processes().splitlines():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def ocsp_status(site: Site, serial: int) -> str:
    certs = site.data / "certs"
    where = ["-issuer", str(certs / "issuing-ca.pem"), "-serial", hex(serial), "-url", site.ocsp_url]
    result = subprocess.run(
        ["openssl", "ocsp", *where, "-CAfile", str(certs / "root.pem"), "-no_nonce", "-timeout", "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert "Response verify OK" in out, out
    return out


def crl_serials(site: Site, tmp_path: Path) -> set[int]:
    path = tmp_path / "issuing-ca.crl"
    subprocess.run(["curl", "-sf", "-o", str(path), site.repo_url + "issuing-ca.crl"], check=True, timeout=60)
    text = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(s, 16) for s in re.findall(r"Serial Number: ([0-9A-F]+)", text)}


def revoke(site: Site, serial: int, reason: str = "keyCompromise") -> None:
    result = site.cli("revoke", format(serial, "x"), "--reason", reason)
    assert result.returncode == 0, result.stderr


def test_sigterm_during_startup_presign(tmp_path: Path) -> None:
    site = Site(tmp_path)
    assert site.cli("init").returncode == 0
    serials = seed_certificates(site.data, SEEDED)
    site.start(wait=False)
    try:
        wait_for_presign_in_progress(site)
        revoke(site, serials[-1])  # committed during the presign, just before the stop
        signalled = time.monotonic()
        code = site.stop(signal.SIGTERM)
        took = time.monotonic() - signalled
        assert code == 0, site.log()
        assert took < STOP_BOUND, f"serve took {took:.1f} s to stop"
        assert site.processes() == ""
        assert re.search(r"^shirushi: stopped signal=SIGTERM seconds=[\d.]+$", site.log(), re.M), site.log()
        assert "presign run run=full" not in site.log()  # it stopped the presign before its end

        site.start(timeout=600)  # the next serve signs everything again, behind the open port
        issuer = issuer_id(site)
        with cache(site) as r:
            deadline = time.monotonic() + 600
            while not r.exists(records.complete_key(issuer)):
                assert time.monotonic() < deadline, "the refill did not finish"
                time.sleep(0.2)
            with r.pipeline(transaction=False) as pipe:
                for serial in serials:
                    for alg in ("sha1", "sha256"):
                        pipe.exists(records.response_key(issuer, alg, serial))
                assert all(pipe.execute())
        assert ": good" in ocsp_status(site, serials[0])
        out = ocsp_status(site, serials[-1])
        assert ": revoked" in out and "Reason: keyCompromise" in out, out
        assert serials[-1] in crl_serials(site, tmp_path)
        assert site.stop(signal.SIGINT) == 0
        assert re.search(r"^shirushi: stopped signal=SIGINT seconds=[\d.]+$", site.log(), re.M), site.log()
        assert site.processes() == ""
    finally:
        kill_all(site)


def test_sigkill_at_startup_and_while_serving_leaves_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, SHIRUSHI_API__TOKEN="t")
    assert site.cli("init").returncode == 0
    serials = seed_certificates(site.data, 3000)
    site.start(wait=False)
    try:
        wait_for_presign_in_progress(site)
        assert len(site.processes().splitlines()) >= 3  # serve, redis-server, signing worker(s)
        site.stop(signal.SIGKILL)
        assert wait_until_gone(site, ORPHAN_BOUND) == ""

        site.start(timeout=600)
        assert "responder" in site.processes()
        revoke(site, serials[0], "superseded")  # committed just before the kill
        site.stop(signal.SIGKILL)
        assert wait_until_gone(site, ORPHAN_BOUND) == ""

        site.start(timeout=600)
        out = ocsp_status(site, serials[0])
        assert ": revoked" in out and "Reason: superseded" in out, out
        assert ": good" in ocsp_status(site, serials[1])
        assert serials[0] in crl_serials(site, tmp_path)
        assert site.stop(signal.SIGTERM) == 0, site.log()[-4000:]
        assert site.processes() == ""
    finally:
        kill_all(site)


def test_sigterm_to_every_process_at_once_like_systemd(tmp_path: Path) -> None:
    """systemd's default KillMode=control-group signals redis-server and the signing workers
    too: `serve` still stops cleanly (status 0) and leaves nothing behind."""
    site = Site(tmp_path)
    assert site.cli("init").returncode == 0
    seed_certificates(site.data, 3000)
    site.start(wait=False)
    try:
        wait_for_presign_in_progress(site)
        pids = [int(line.split()[0]) for line in site.processes().splitlines()]
        assert len(pids) >= 3  # serve, redis-server, signing worker(s)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        assert site.stop(signal.SIGTERM) == 0, site.log()
        assert wait_until_gone(site, ORPHAN_BOUND) == ""
    finally:
        kill_all(site)


def start_responder(site: Site, redis_url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(site.env, SHIRUSHI_REDIS__URL=redis_url, SHIRUSHI_OCSP__WORKERS="2")
    with open(site.root / "responder.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "shirushi", "responder", *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def test_standalone_responder_stops_on_sigterm_and_leaves_nothing_on_sigkill(tmp_path: Path, redis_url: str) -> None:
    site = Site(tmp_path)
    assert site.cli("init").returncode == 0
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            proc = start_responder(site, redis_url)
            wait_port(site.ocsp_port, proc)
            # the supervisor, two workers and the metrics listener (a lone responder serves its own);
            # the port is the supervisor's, so the children may still be starting.
            deadline = time.monotonic() + 60
            while len(site.processes().splitlines()) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(site.processes().splitlines()) == 4, site.processes()
            signalled = time.monotonic()
            proc.send_signal(sig)
            code = proc.wait(timeout=60)
            assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            assert time.monotonic() - signalled < STOP_BOUND
            assert wait_until_gone(site, ORPHAN_BOUND) == ""
    finally:
        kill_all(site)


def test_responder_whose_parent_is_already_gone_does_not_serve(tmp_path: Path, redis_url: str) -> None:
    """`--exit-with-parent PID` with a PID that is not its parent (the starter died first)."""
    site = Site(tmp_path)
    assert site.cli("init").returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    site.env["SHIRUSHI_OCSP__LISTEN"] = f"127.0.0.1:{free_port()}"
    proc = start_responder(site, redis_url, "--exit-with-parent", str(gone.pid))
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert site.processes() == ""


HANGING_EXIT = """
import atexit, sys, time, types
import shirushi.serve
from shirushi.commands import run

run.EXIT_BOUND = 0.5
# A serve that stopped cleanly, then an interpreter exit that never ends.
shirushi.serve.serve = lambda settings, config: (atexit.register(time.sleep, 3600), 0)[1]
sys.exit(run.cmd_serve(None, types.SimpleNamespace(config=None)))
"""


def test_an_exit_that_hangs_after_serve_stopped_still_ends() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HANGING_EXIT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Timeout (0:00:00.500000)!" in done.stderr and "most recent call first" in done.stderr
    assert time.monotonic() - started < 30
