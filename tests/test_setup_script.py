"""scripts/setup's package step: it stops only the services of packages it installed itself.

The script runs for real in a copy of the repository layout; only the machine's package manager
and service manager are replaced by recorders on PATH (the test must not install or stop anything
on the host). Everything else -- bash, the script's own logic, its idempotence -- is the real one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).parents[1] / "scripts" / "setup"

# dpkg-query -W -f='${Status}' PKG: "install ok installed" when PKG is in $FAKE_STATE.
DPKG_QUERY = """#!/bin/sh
for last; do :; done
grep -qx "$last" "$FAKE_STATE" && printf 'install ok installed' && exit 0
exit 1
"""
# apt-get install ... PKG...: record the call, mark the packages installed.
APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = install ] || exit 0
for a; do case "$a" in -*|install) ;; *) echo "$a" >> "$FAKE_STATE" ;; esac; done
"""
RECORD = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
"""
SUDO = """#!/bin/sh
exec "$@"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "setup").write_text(SCRIPT.read_text())
    (root / "scripts" / "setup").chmod(0o755)
    (root / "pyproject.toml").write_text("")
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "python").chmod(0o755)
    stamp = venv / ".shirushi-installed[dev]"
    stamp.touch()
    os.utime(root / "pyproject.toml", (1, 1))  # older than the stamp: no pip run
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (
        ("dpkg-query", DPKG_QUERY),
        ("apt-get", APT_GET),
        ("systemctl", RECORD),
        ("service", RECORD),
        ("sudo", SUDO),
    ):
        (fake / name).write_text(body)
        (fake / name).chmod(0o755)
    return root


def run_setup(repo: Path, installed: list[str]) -> list[str]:
    state, log = repo.parent / "state", repo.parent / "log"
    if not state.exists():
        state.write_text("".join(f"{p}\n" for p in installed))
    log.write_text("")
    env = {
        "PATH": f"{repo.parent / 'bin'}:{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "FAKE_LOG": str(log),
        "HOME": str(repo.parent),
    }
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "setup"), "--dev"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return log.read_text().splitlines()


def dev_packages() -> list[str]:
    text = SCRIPT.read_text()
    names: list[str] = []
    for var in ("runtime_pkgs", "dev_pkgs", "interop_pkgs"):
        line = next(line for line in text.splitlines() if line.startswith(f"{var}=("))
        names += line.split("(", 1)[1].rstrip(")").split()
    return names


def stopped(log: list[str]) -> set[str]:
    return {line.split()[-1] for line in log if line.startswith("systemctl disable --now")}


def test_stops_only_what_it_installed(repo: Path) -> None:
    # redis and nginx were on the machine and running before; postgresql and haproxy were not.
    before = [p for p in dev_packages() if p not in ("postgresql", "haproxy", "nginx-light")] + ["nginx"]
    log = run_setup(repo, before)
    install = next(line for line in log if line.startswith("apt-get install"))
    assert "postgresql" in install.split() and "haproxy" in install.split()
    assert "nginx-light" not in install.split()  # nginx is there already: any flavour will do
    assert stopped(log) == {"postgresql", "haproxy"}
    # Idempotent: a second run installs nothing and stops nothing.
    assert run_setup(repo, before) == []


def test_stops_nginx_when_it_installed_nginx_light(repo: Path) -> None:
    before = [p for p in dev_packages() if p not in ("nginx-light", "redis-server")]
    log = run_setup(repo, before)
    assert stopped(log) == {"nginx", "redis-server"}


def test_nothing_missing_touches_no_service(repo: Path) -> None:
    assert run_setup(repo, dev_packages()) == []
