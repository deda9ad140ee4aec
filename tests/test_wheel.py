"""The package works installed from a wheel, run from any directory (migrations and templates inside)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support.pki import make_csr

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with Shirushi installed from a freshly built wheel; returns its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("shirushi-*.whl"))
    assert len(wheels) == 1
    env_dir = work / "venv"
    # Reuse this interpreter's site-packages for the dependencies (no network), not for Shirushi.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    site = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "outer.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheels[0]),
        ],
        check=True,
        capture_output=True,
    )
    return env_dir / "bin"


def test_wheel_carries_its_data(installed: Path) -> None:
    import zipfile

    wheel = next((installed.parent.parent / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "shirushi/store/migrations/versions/0001_initial.py" in names
    assert "shirushi/store/migrations/env.py" in names
    assert "shirushi/templates/cps.txt" in names
    assert "shirushi/py.typed" in names


def test_installed_package_runs_from_anywhere(installed: Path, tmp_path: Path, redis_url: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SHIRUSHI_DATA_DIR": str(tmp_path / "d"),
        "SHIRUSHI_REDIS__URL": redis_url,
    }
    python = installed / "python"
    where = subprocess.run(
        [str(python), "-c", "import shirushi; print(shirushi.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT / "src") not in where, "the test must use the installed wheel, not the source tree"
    script = installed / "shirushi"
    init = subprocess.run([str(python), str(script), "init"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    (elsewhere / "req.pem").write_bytes(make_csr())
    issued = subprocess.run(
        [str(python), str(script), "issue", "--csr", "req.pem"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert issued.returncode == 0, issued.stderr
    assert issued.stdout.count("BEGIN CERTIFICATE") == 2
    crl = subprocess.run([str(python), str(script), "crl"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert crl.returncode == 0, crl.stderr
    assert (tmp_path / "d" / "repository" / "issuing-ca.crl").exists()
    bad = subprocess.run(
        [str(python), str(script), "--config", "nope.toml", "ca-certs"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "shirushi: error: configuration file nope.toml does not exist"


BLOCKER = '''
"""Makes this interpreter a responder-only install: the `backend` extra's modules are missing."""
import sys

BLOCKED = {"starlette", "uvicorn", "pkcs11", "sqlalchemy", "alembic", "pkilint", "badkeys"}


class _Missing:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Missing)
'''


def test_responder_runs_without_the_backend_extra(installed: Path, tmp_path: Path, redis_url: str) -> None:
    """`pip install shirushi` (no extra) is a working responder; CA commands say what to install."""
    import socket

    from support.serving import free_port, wait_port

    python = installed / "python"
    site = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SHIRUSHI_DATA_DIR": str(tmp_path / "d"),
        "SHIRUSHI_REDIS__URL": redis_url,
    }
    # The CA (full install) makes the issuer certificates the responder needs.
    init = subprocess.run([str(installed / "shirushi"), "init"], env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    (Path(site) / "_no_backend.py").write_text(BLOCKER)
    (Path(site) / "zz_no_backend.pth").write_text("import _no_backend\n")
    try:
        refused = subprocess.run(
            [str(installed / "shirushi"), "issue", "--csr", "x"], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 2
        assert refused.stderr.strip() == "shirushi: error: `issue` needs the CA: pip install 'shirushi[backend]'"
        port = free_port()
        log = tmp_path / "responder.log"
        with log.open("wb") as err:
            responder = subprocess.Popen(
                [str(installed / "shirushi"), "responder"],
                # Metrics on, on a port of their own (not the default 9108 another process may hold).
                env={
                    **env,
                    "SHIRUSHI_OCSP__LISTEN": f"127.0.0.1:{port}",
                    "SHIRUSHI_METRICS__LISTEN": f"127.0.0.1:{free_port()}",
                },
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_port(port, responder, timeout=60)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
                    b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
                )
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            # HTTP 200 carrying the OCSP malformedRequest response (RFC 6960 4.2.1): 30 03 0a 01 01.
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert reply.endswith(b"\x30\x03\x0a\x01\x01")
        finally:
            responder.terminate()
            assert responder.wait(timeout=20) == 0, log.read_text()
    finally:
        (Path(site) / "zz_no_backend.pth").unlink()
