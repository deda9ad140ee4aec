"""Pre-issuance linting with the validator built once per process and in worker processes.

pkilint's own command line (a fresh process that builds everything its own way) is the outside
oracle: the findings of `lint.lint_der` in this process and through `LintPool` workers must be
exactly the ones it reports for the same certificates. Then the pool inside issuance: a lint
ERROR still refuses issuance, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from shirushi import config
from shirushi.backend import Backend
from shirushi.ca import lint
from shirushi.ca.lint_pool import LintPool
from shirushi.clock import FrozenClock
from shirushi.errors import LintError
from support.pki import make_csr
from support.store_rows import audit_entries, count_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.oracle]  # worker processes, pkilint's command line

BIN = Path(
    shutil.which("lint_cabf_serverauth_cert") or Path(__file__).parents[1] / ".venv/bin/lint_cabf_serverauth_cert"
)
AT = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
# Public-looking URLs so the name validators see registrable domains, not only loopback hosts.
PUBLIC_URLS = {
    "SHIRUSHI_OCSP__URL": "http://ocsp.shirushi.example.jp/",
    "SHIRUSHI_REPOSITORY__URL": "http://repo.shirushi.example.jp/",
    "SHIRUSHI_CA__CPS_URI": "http://repo.shirushi.example.jp/cps",
}

Key = tuple[str, str, str, str]


def backend_at(tmp_path: Path, redis_url: str, **env: str) -> Backend:
    settings = config.load(
        None, environ={"SHIRUSHI_DATA_DIR": str(tmp_path / "data"), "SHIRUSHI_REDIS__URL": redis_url, **env}
    )
    return Backend(settings, FrozenClock(AT))


@pytest.fixture(scope="module")
def pool() -> Iterator[LintPool]:
    p = LintPool(processes=2)
    yield p
    p.close()


@pytest.fixture
def certificates(tmp_path: Path, redis_url: str) -> Iterator[list[tuple[bytes, str]]]:
    """(DER, pkilint type) of the CA's own certificates and a few subscriber certificates."""
    b = backend_at(tmp_path, redis_url, **PUBLIC_URLS)
    b.init()
    hierarchy = b.authority.hierarchy()
    der = serialization.Encoding.DER
    certs = [
        (hierarchy.root.public_bytes(der), "ROOT-CA"),
        (hierarchy.issuing.public_bytes(der), "EXTERNAL-UNCONSTRAINED-TLS-CA"),
        (hierarchy.ocsp_signer.public_bytes(der), "OCSP-RESPONDER"),
    ]
    for names in (["www.example.jp"], ["a.example.co.jp", "b.example.co.jp"], ["shop.example.com"]):
        issued = b.authority.issue(make_csr(names))
        certs.append((issued.certificate.public_bytes(der), "OV-FINAL-CERTIFICATE"))
    yield certs
    b.close()


def keyed(findings: list[lint.Finding]) -> list[Key]:
    return sorted((f.path, f.severity, f.code, f.message) for f in findings)


def pkilint_cli(tmp_path: Path, der: bytes, cert_type: str) -> list[Key]:
    path = tmp_path / "cert.der"
    path.write_bytes(der)
    result = subprocess.run(
        [str(BIN), "lint", "-t", cert_type, "-s", "ALL", "-f", "JSON", "--document-format", "DER", str(path)],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    return sorted(
        (r["node_path"], f["severity"], f["code"], f["message"] or "")
        for r in report["results"]
        for f in r["finding_descriptions"]
    )


def test_findings_match_pkilints_own_command_line(
    certificates: list[tuple[bytes, str]], pool: LintPool, tmp_path: Path
) -> None:
    """Built once, with one shared public suffix list, in process and in the workers: the same
    findings, path by path, as pkilint reports for each certificate."""
    for der, cert_type in certificates:
        expected = pkilint_cli(tmp_path, der, cert_type)
        assert expected, cert_type  # pkilint always reports something (at least INFO)
        assert keyed(lint.lint_der(der, cert_type)) == expected, cert_type
        assert keyed(pool.lint_der(der, cert_type)) == expected, cert_type
        assert keyed(lint.lint_der(der, cert_type)) == expected, cert_type  # the cached validator again


def test_pool_lints_in_other_processes(pool: LintPool, certificates: list[tuple[bytes, str]]) -> None:
    pids = pool.pids
    assert len(pids) == 2 and os.getpid() not in pids
    der, cert_type = certificates[-1]
    assert keyed(pool.lint_der(der, cert_type)) == keyed(lint.lint_der(der, cert_type))


def test_a_pool_not_waited_for_lints_once_warm(certificates: list[tuple[bytes, str]]) -> None:
    """`serve`'s pool (wait=False): the constructor returns while the workers still import
    pkilint; a lint asked at once waits for a warm worker and gives the same verdict."""
    own = LintPool(processes=2, wait=False)
    try:
        der, cert_type = certificates[-1]
        assert keyed(own.lint_der(der, cert_type)) == keyed(lint.lint_der(der, cert_type))
        assert len(own.pids) == 2 and os.getpid() not in own.pids
    finally:
        own.close()


def test_one_core_lints_in_process(certificates: list[tuple[bytes, str]]) -> None:
    single = LintPool(processes=1)
    try:
        assert single.pids == set()
        for der, cert_type in certificates[-2:]:
            assert keyed(single.lint_der(der, cert_type)) == keyed(lint.lint_der(der, cert_type))
    finally:
        single.close()


def test_background_pool_lints_in_its_worker_and_stops_it_when_closed(
    certificates: list[tuple[bytes, str]],
) -> None:
    """`shirushi issue`'s pool: one worker, started without waiting; the same verdicts; and a
    worker still loading pkilint when the command ends is stopped, not waited for."""
    started = time.monotonic()
    background = LintPool.in_background()
    assert time.monotonic() - started < 5  # returns before the worker has loaded pkilint
    try:
        assert len(background.pids) == 1 and os.getpid() not in background.pids
        for der, cert_type in certificates[-2:]:
            assert keyed(background.lint_der(der, cert_type)) == keyed(lint.lint_der(der, cert_type))
    finally:
        background.close()
    early = LintPool.in_background()
    (pid,) = early.pids
    early.close()  # at once: the worker is still starting
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_dead_worker_is_replaced_and_the_verdict_kept(certificates: list[tuple[bytes, str]]) -> None:
    own = LintPool(processes=2)
    try:
        der, cert_type = certificates[-1]
        expected = keyed(lint.lint_der(der, cert_type))
        before = own.pids
        os.kill(next(iter(before)), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while own.pids & before and time.monotonic() < deadline:
            assert keyed(own.lint_der(der, cert_type)) == expected
            time.sleep(0.2)
        assert own.pids and not own.pids & before  # a fresh pool of fresh workers
        assert keyed(own.lint_der(der, cert_type)) == expected
    finally:
        own.close()


def test_lint_error_refuses_issuance_through_the_pool(tmp_path: Path, redis_url: str) -> None:
    """An internal name in the URLs (not a loopback one, so never tolerated) is a pkilint ERROR:
    the pool's verdict refuses issuance with the same error, the CA key signs nothing, nothing
    is stored."""
    good = backend_at(tmp_path, redis_url, **PUBLIC_URLS)
    good.init()
    issuer = good.presigner.context().issuer_id
    internal = {**PUBLIC_URLS, "SHIRUSHI_OCSP__URL": "http://ocsp.corp.internal/"}
    bad = backend_at(tmp_path, redis_url, **internal)
    bad.use_lint_pool()
    try:
        assert bad._lint_pool is not None
        assert bad.authority.linter == bad._lint_pool.lint_der
        before = count_certificates(bad.store, issuer)
        audited = len(audit_entries(bad.store, "issue"))
        with pytest.raises(LintError, match=r"cabf\.internal_domain_name.*ocsp\.corp\.internal"):
            bad.authority.issue(make_csr())
        assert count_certificates(bad.store, issuer) == before
        assert len(audit_entries(bad.store, "issue")) == audited
        # The same pool issues what passes, and the certificate is clean for pkilint.
        good.use_lint_pool()
        issued = good.authority.issue(make_csr(["www.example.jp"]))
        assert count_certificates(good.store, issuer) == before + 1
        der = issued.certificate.public_bytes(serialization.Encoding.DER)
        report = pkilint_cli(tmp_path, der, "OV-FINAL-CERTIFICATE")
        assert not [k for k in report if k[1] in ("ERROR", "FATAL")]
    finally:
        bad.close()
        good.close()


def test_workers_end_with_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of the process that owns the pool (as of `serve`) leaves no lint worker behind."""
    script = "import sys, time\nfrom shirushi.ca.lint_pool import LintPool\np = LintPool(2)\n"
    script += "print(*p.pids, flush=True)\ntime.sleep(120)\n"
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        owner.kill()
        owner.communicate()
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if running(pid)]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
