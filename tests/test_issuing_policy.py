"""The issuing CA's certificatePolicies (`ca.issuing_ca_policy`, BR 7.1.2.10.5) and what it may
issue: a subscriber certificate keeps its reserved policy (OV 2.23.140.1.2.2, DV 2.23.140.1.2.1)
through RFC 5280 6.1 path validation only under a CA listing that policy or anyPolicy, so the
authority refuses a profile its issuing CA does not list. `openssl verify -policy_check
-explicit_policy` is the oracle; pkilint lints the CA at `init`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shirushi.backend import Backend
from shirushi.config import load
from shirushi.errors import StateError
from support.pki import make_csr

pytestmark = pytest.mark.oracle

DV, OV, ANY = "2.23.140.1.2.1", "2.23.140.1.2.2", "2.5.29.32.0"
CP = "1.3.6.1.4.1.99999.1.1"


@pytest.fixture(params=["ov", "dv", "any"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Backend]]:
    policy = str(request.param)
    settings = load(environ={"SHIRUSHI_DATA_DIR": str(tmp_path), "SHIRUSHI_CA__ISSUING_CA_POLICY": policy})
    b = Backend(settings)
    b.init()
    yield policy, b
    b.close()


def policies(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    return [p.policy_identifier.dotted_string for p in ext]


def verify(backend: Backend, cert: x509.Certificate, policy: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    hierarchy = backend.authority.hierarchy()
    files = {"root": hierarchy.root, "issuing": hierarchy.issuing, "leaf": cert}
    for name, c in files.items():
        (tmp / f"{name}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
    chain = ["-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "issuing.pem"), str(tmp / "leaf.pem")]
    return subprocess.run(
        ["openssl", "verify", "-policy_check", "-explicit_policy", "-policy", policy, *chain],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_issuing_ca_issues_the_profiles_it_lists(backend: tuple[str, Backend], tmp_path: Path) -> None:
    policy, b = backend
    issuing = b.authority.hierarchy().issuing
    assert policies(issuing) == {"ov": [OV, CP], "dv": [DV, CP], "any": [ANY]}[policy]
    for profile, oid in (("ov", OV), ("dv", DV)):
        allowed = policy in (profile, "any")
        if not allowed:
            with pytest.raises(StateError) as refused:
                b.authority.issue(make_csr(["www.example.jp"]), profile=profile)
            assert oid in str(refused.value) and "ca.issuing_ca_policy" in str(refused.value)
            continue
        issued = b.authority.issue(make_csr(["www.example.jp"]), profile=profile).certificate
        assert policies(issued)[0] == oid
        result = verify(b, issued, oid, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        # The same check refuses a policy the chain does not carry: it can fail.
        other = DV if oid == OV else OV
        assert verify(b, issued, other, tmp_path).returncode != 0
