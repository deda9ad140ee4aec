"""Test helper: a real `shirushi serve` on free loopback ports with its own data directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from support.pki import cli_env, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


class Site:
    """A data directory with its ports and environment; `serve()` runs the server."""

    def __init__(self, root: Path, **extra_env: str) -> None:
        self.root = root
        self.data = root / "data"
        self.ocsp_port, self.repo_port, self.api_port = free_port(), free_port(), free_port()
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.ocsp_url = f"http://127.0.0.1:{self.ocsp_port}/"
        self.repo_url = f"http://127.0.0.1:{self.repo_port}/"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = cli_env(
            self.data,
            SHIRUSHI_OCSP__LISTEN=f"127.0.0.1:{self.ocsp_port}",
            SHIRUSHI_OCSP__URL=self.ocsp_url,
            SHIRUSHI_REPOSITORY__LISTEN=f"127.0.0.1:{self.repo_port}",
            SHIRUSHI_REPOSITORY__URL=self.repo_url,
            SHIRUSHI_CA__CPS_URI=self.repo_url + "cps",
            SHIRUSHI_API__LISTEN=f"127.0.0.1:{self.api_port}",
            SHIRUSHI_METRICS__LISTEN=f"127.0.0.1:{self.metrics_port}",
            **extra_env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.env, input=input)

    def start(self, *, wait: bool = True, timeout: float = 120) -> None:
        """Start `serve`; with `wait`, return once its three ports accept connections."""
        with open(self.root / "serve.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shirushi", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        for port in (self.repo_port, self.ocsp_port, self.api_port) if wait else ():
            wait_port(port, self.proc, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal `serve` alone (as an operator or the kernel would) and wait for it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def processes(self) -> str:
        """Processes still running on this site's data directory: redis-server, responders,
        signing workers (found by command line or by SHIRUSHI_DATA_DIR in their environment)."""
        mine = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue  # gone meanwhile, or a kernel thread
            if state == "Z":
                continue  # exited, not yet reaped by its parent
            if str(self.data) in cmdline or f"SHIRUSHI_DATA_DIR={self.data}".encode() in environ.split(b"\0"):
                mine.append(f"{entry.name} {cmdline}")
        return "\n".join(sorted(mine))

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextlib.contextmanager
    def serving(self) -> Iterator[Site]:
        self.start()
        try:
            yield self
        finally:
            if self.proc is not None:
                self.stop()
            # A test that failed half-way (e.g. after killing serve) must not leave an orphaned
            # redis-server or responder behind for the rest of the run.
            subprocess.run(["pkill", "-KILL", "-f", str(self.data)], check=False)
