"""Test helper: a real Redis Sentinel set-up on loopback (1 primary, 2 replicas, 3 sentinels).

Every process is a redis-server on a free port with its own directory; `SentinelSet` starts them,
waits until the sentinels agree on the primary and know both replicas and each other, and can
kill the primary (SIGKILL, as a crash) and wait for the failover. Used by the tests and by
bench/failover.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis

from support.serving import free_port

SERVICE = "shirushi"
# Sentinel timings kept short so a failover takes seconds (production uses longer ones; see
# docs/deploy.md): the primary is "down" after 1 s without a reply.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 6000


class SentinelSet:
    def __init__(self, directory: Path, replicas: int = 2, sentinels: int = 3) -> None:
        self.directory = directory
        self.data_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.killed: list[int] = []

    @property
    def nodes(self) -> list[str]:
        """redis.nodes for the configuration: the sentinels."""
        return [f"127.0.0.1:{p}" for p in self.sentinel_ports]

    @property
    def env(self) -> dict[str, str]:
        """Environment overrides that point Shirushi at this set-up."""
        return {
            "SHIRUSHI_REDIS__MODE": "sentinel",
            "SHIRUSHI_REDIS__NODES": ",".join(self.nodes),
            "SHIRUSHI_REDIS__SENTINEL_SERVICE": SERVICE,
        }

    def _spawn(self, port: int, *args: str) -> None:
        where = self.directory / str(port)
        where.mkdir(parents=True, exist_ok=True)
        log = open(where / "log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[port] = subprocess.Popen(
            ["redis-server", *args], cwd=where, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    def _data_args(self, port: int) -> list[str]:
        where = self.directory / str(port)
        return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(where)]

    def start(self) -> SentinelSet:
        primary, *replicas = self.data_ports
        self._spawn(primary, *self._data_args(primary))
        for port in replicas:
            self._spawn(port, *self._data_args(port), "--replicaof", "127.0.0.1", str(primary))
        for port in self.sentinel_ports:
            where = self.directory / str(port)
            where.mkdir(parents=True, exist_ok=True)
            conf = where / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {where}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 2\n"
            )
            self._spawn(port, str(conf), "--sentinel")
        try:
            self.wait_settled(primary, timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def primary_port(self) -> int | None:
        """The primary as the first sentinel that answers sees it."""
        for port in self.sentinel_ports:
            if port in self.killed:
                continue
            with contextlib.suppress(redis.RedisError):
                client = self.client(port)
                try:
                    found = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)  # type: ignore[no-untyped-call]
                finally:
                    client.close()
                if found:
                    return int(found[1])
        return None

    def _settled(self, primary: int) -> bool:
        """Every live sentinel sees `primary`, the other live sentinels and the live replicas,
        and `primary` says it is one with them connected."""
        live_data = [p for p in self.data_ports if p not in self.killed and p != primary]
        live_sentinels = [p for p in self.sentinel_ports if p not in self.killed]
        try:
            for port in live_sentinels:
                client = self.client(port)
                try:
                    # redis-py parses these into dicts (ints for numbers, "flags" kept as text).
                    info = cast(dict[str, Any], client.sentinel_master(SERVICE))
                    replicas = client.sentinel_slaves(SERVICE)
                finally:
                    client.close()
                if int(info["port"]) != primary or "down" in info["flags"]:
                    return False
                if int(info["num-other-sentinels"]) < len(live_sentinels) - 1:
                    return False
                ok = {
                    int(r["port"]) for r in replicas if "down" not in r["flags"] and r.get("master-link-status") == "ok"
                }
                if not set(live_data) <= ok:
                    return False
            client = self.client(primary)
            try:
                role = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            finally:
                client.close()
            return bool(role[0] == b"master" and len(role[2]) >= len(live_data))
        except (redis.RedisError, KeyError, ValueError):
            return False

    def wait_settled(self, primary: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self._settled(primary):
            for port, proc in self.procs.items():
                if proc.poll() is not None and port not in self.killed:
                    raise RuntimeError(f"redis-server on port {port} exited: {self.log(port)[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sentinel set-up did not settle on {primary}")
            time.sleep(0.1)

    def kill(self, port: int) -> None:
        """SIGKILL one process (a crash: no goodbye to its clients or sentinels)."""
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait(timeout=10)
        self.killed.append(port)

    def kill_primary(self) -> int:
        primary = self.primary_port()
        assert primary is not None
        self.kill(primary)
        return primary

    def wait_failover(self, old: int, timeout: float = 60) -> int:
        """Wait until the sentinels promoted a replica in place of `old` and all settled; its port."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.primary_port()
            if new is not None and new != old:
                self.wait_settled(new, timeout=max(1.0, deadline - time.monotonic()))
                return new
            if time.monotonic() > deadline:
                raise TimeoutError("no failover")
            time.sleep(0.05)

    def log(self, port: int) -> str:
        path = self.directory / str(port) / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    @contextlib.contextmanager
    def running(self) -> Iterator[SentinelSet]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
