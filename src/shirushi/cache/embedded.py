"""The embedded redis-server that `serve` runs when `redis.url` is empty. Starts a process.

It listens only on a unix socket in data_dir (no TCP port), keeps no snapshot (every response can
be signed again from the store, and `serve` does so at start) and is stopped with `serve`.
It also dies with `serve` when that is killed (SIGKILL from Linux, `lifecycle.die_with_parent`);
one left over by an older version or another machine's crash is shut down at the next start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time

import redis

from shirushi.errors import ServiceError
from shirushi.layout import Layout
from shirushi.lifecycle import exec_with_parent_death


class EmbeddedRedis:
    def __init__(self, layout: Layout) -> None:
        self.socket_path = layout.redis_socket
        self.workdir = layout.redis_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start it; call from the main thread before any other thread exists (see preexec_fn)."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServiceError("redis.url is empty and redis-server is not installed (apt-get install redis-server)")
        workdir = self.workdir
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
        self._shut_down_orphan(client)
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                exe,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--loglevel",
                "warning",
                "--logfile",
                str(workdir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C at the terminal reaches `serve`, which stops Redis last.
            start_new_session=True,
            # SIGKILL when this thread (the main one, so the process) ends: its data is disposable.
            preexec_fn=exec_with_parent_death(signal.SIGKILL),
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

    @staticmethod
    def _shut_down_orphan(client: redis.Redis) -> None:
        """Stop a redis-server left behind by a `serve` that was killed.

        The caller holds the data directory's serve lock, so no live `serve` owns it. Its cache
        cannot be trusted (it may predate revocations), and it is refilled at start anyway.
        """
        try:
            client.ping()
        except redis.ConnectionError:
            return
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
            except redis.ConnectionError:
                return
            time.sleep(0.05)
        raise ServiceError("a stale redis-server on the data directory's socket does not stop")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
