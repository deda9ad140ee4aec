"""The embedded redis-server that `serve` runs when `redis.url` is empty. Starts a process.

It listens only on a unix socket in data_dir (no TCP port), keeps no snapshot (every response can
be signed again from the store, and `serve` does so at start) and is stopped with `serve`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from shirushi.errors import ServiceError


class EmbeddedRedis:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServiceError("redis.url is empty and redis-server is not installed (apt-get install redis-server)")
        workdir = self.socket_path.parent / "redis"
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
        try:
            client.ping()
            raise ServiceError(f"a Redis server already listens on {self.socket_path}; is another serve running?")
        except redis.ConnectionError:
            pass
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [exe, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning",
             "--logfile", str(workdir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServiceError(f"embedded redis-server did not start (see {workdir / 'redis.log'})") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
