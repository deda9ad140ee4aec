"""bench/locustfile.py as an operator runs it: one-line input errors, and a clean run against `serve`."""

from __future__ import annotations

import base64
import csv
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from support.pki import make_csr, split_pem
from support.serving import Site

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[1]
LOCUST = ROOT / ".venv" / "bin" / "locust"
LOCUSTFILE = ROOT / "bench" / "locustfile.py"


def locust(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-t", "3s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (None, "give --ocsp-requests"),
        ("missing.der", "no such file"),
        ("adir", "is a directory"),
        # Root reads mode-000 files, so that case exists only for other users.
        *([("unreadable.der", "cannot read")] if os.geteuid() != 0 else []),
        ("notocsp.der", "is not a DER OCSP request"),
        ("huge.der", "is larger than"),
    ],
)
def test_input_errors_are_one_line(tmp_path: Path, given: str | None, message: str) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "notocsp.der").write_bytes(b"\x30\x03\x02\x01\x01")
    (tmp_path / "huge.der").write_bytes(b"\x30" * 100_000)
    unreadable = tmp_path / "unreadable.der"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    args = ["--host", "http://127.0.0.1:9"] + (["--ocsp-requests", str(tmp_path / given)] if given else [])
    result = locust(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    ours = [line for line in result.stderr.splitlines() if "locust.main: Starting Locust" not in line]
    assert len(ours) == 1 and message in ours[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def _request(cert: x509.Certificate, issuer: x509.Certificate, alg: hashes.HashAlgorithm, nonce: bytes | None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, alg)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("locust"))
    assert s.cli("init").returncode == 0
    with s.serving():
        yield s


def test_headless_run_against_serve_has_no_failures(site: Site, tmp_path: Path) -> None:
    (tmp_path / "req.pem").write_bytes(make_csr(["www.example.jp"]))
    issued = site.cli("issue", "--csr", str(tmp_path / "req.pem"))
    assert issued.returncode == 0, issued.stderr
    cert, issuer = split_pem(issued.stdout)
    (tmp_path / "leaf.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "issuer.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    # Made by stock openssl, as the README does; and one whose base64 holds '/' and '+' (a nonce
    # of 0xff / 0xfb bytes), which must reach the responder percent-encoded under a single '/'.
    files = []
    for name, extra in (("sha1.der", []), ("sha256.der", ["-sha256"])):
        subprocess.run(
            ["openssl", "ocsp", "-issuer", str(tmp_path / "issuer.pem"), *extra, "-cert", str(tmp_path / "leaf.pem"),
             "-no_nonce", "-reqout", str(tmp_path / name)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        files.append(tmp_path / name)
    # Where the nonce falls in the base64 depends on the serial's length: try the three alignments.
    for shift in range(3):
        slashy = _request(cert, issuer, hashes.SHA256(), b"\x00" * shift + b"\xff\xff\xff\xfb\xef\xbe" * 3)
        encoded = base64.b64encode(slashy).decode()
        if "/" in encoded and "+" in encoded:
            break
    assert "/" in encoded and "+" in encoded
    (tmp_path / "slashy.der").write_bytes(slashy)
    files.append(tmp_path / "slashy.der")
    stats = tmp_path / "out"
    result = locust(
        "-u", "5", "-r", "5", "-t", "8s", "--host", site.ocsp_url.rstrip("/"),
        "--ocsp-requests", ",".join(map(str, files)), "--csv", str(stats), "--only-summary",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    with open(f"{stats}_stats.csv", newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    for name in ("GET /{base64}", "POST /", "Aggregated"):
        assert int(rows[name]["Request Count"]) > 0, rows
        assert int(rows[name]["Failure Count"]) == 0, rows


def test_readme_command_as_written(tmp_path: Path) -> None:
    """The README's load-test block, run from the repository against a demo's files.

    Only what must differ on a test machine is replaced: the data directory and port (the test
    cannot take the demo's fixed ones) and the 60 s run time (5 s).
    """
    readme = (ROOT / "README.md").read_text()
    block = readme.split("With the demo serving, from the repository:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    site = Site(tmp_path)
    demo = site.cli("demo", "--no-serve")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    script = (
        block.replace("scripts/setup --dev\n", "")
        .replace("var/shirushi/", f"{site.data}/")
        .replace("http://127.0.0.1:8080", site.ocsp_url.rstrip("/"))
        .replace("-t 60s", "-t 5s")
        .replace("req.der", str(tmp_path / "req.der"))
    )
    assert "openssl ocsp" in script and ".venv/bin/locust" in script
    with site.serving():
        result = subprocess.run(
            ["bash", "-euc", script.rstrip("\n") + " --csv " + str(tmp_path / "out")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(f"{tmp_path / 'out'}_stats.csv", newline="") as fh:
        total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
