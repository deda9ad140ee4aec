"""Test helper: a real Redis Cluster (redis-server in cluster mode) on free loopback ports.

`RedisCluster(directory, primaries=3, replicas=1).start()` starts the nodes and joins them with
`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, then waits until every node
says `cluster_state:ok`. `kill` (SIGKILL), `wait_failover`, `reshard` and `wait_stable` drive the
events the tests need. A short `cluster-node-timeout` keeps a failover within a few seconds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

import redis
import redis.cluster

from support.serving import free_port

NODE_TIMEOUT_MS = 1000


class Node:
    def __init__(self, directory: Path, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.extra = extra
        self.port = free_port()
        self.bus_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--cluster-enabled", "yes",
                "--cluster-port", str(self.bus_port),
                "--cluster-config-file", str(self.directory / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica may take over however long ago it last heard from its primary (the
                # tests kill primaries moments after the cluster formed), and syncs at once.
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync-delay", "0",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def info(self) -> dict[str, str]:
        with contextlib.closing(self.client()) as c:
            text = c.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def node_id(self) -> str:
        with contextlib.closing(self.client()) as c:
            return str(c.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]

    def role(self) -> str:
        with contextlib.closing(self.client()) as c:
            return str(c.execute_command("ROLE")[0].decode())  # type: ignore[no-untyped-call]

    def synced(self) -> bool:
        with contextlib.closing(self.client()) as c:
            return c.info("replication").get("master_link_status") == "up"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisCluster:
    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 1, extra: tuple[str, ...] = ()) -> None:
        """`extra`: more redis-server arguments for every node."""
        self.nodes = [Node(directory / f"node{i}", extra) for i in range(primaries * (1 + replicas))]
        self.primary_count = primaries
        self.replicas = replicas

    @property
    def seeds(self) -> str:
        """`redis.nodes` as an environment value (comma-separated host:port)."""
        return ",".join(n.address for n in self.nodes)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + 30
        for node in self.nodes:
            while True:
                try:
                    with contextlib.closing(node.client()) as c:
                        c.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or not node.alive():
                        self.stop()
                        raise RuntimeError(f"redis-server on {node.address} did not start") from None
                    time.sleep(0.05)
        self.cli(
            "--cluster", "create", *(n.address for n in self.nodes), "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        )  # fmt: skip
        self.wait_stable()
        deadline = time.monotonic() + 30
        while not all(n.role() == "master" or n.synced() for n in self.nodes):
            if time.monotonic() > deadline:
                raise TimeoutError("replicas did not sync")
            time.sleep(0.05)
        return self

    def cli(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def wait_stable(self, timeout: float = 60) -> None:
        """Until every live node says cluster_state:ok and all slots are served."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                infos = [n.info() for n in self.live()]
                if all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" for i in infos):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not settle")
            time.sleep(0.1)

    def primaries(self) -> list[Node]:
        return [n for n in self.live() if n.role() == "master"]

    def client(self) -> redis.Redis:
        """redis-py's cluster client over the live nodes (typed as redis.Redis, as in
        shirushi.cache.cluster: the same command methods)."""
        seeds = [redis.cluster.ClusterNode("127.0.0.1", n.port) for n in self.live()]  # type: ignore[no-untyped-call]
        return cast(redis.Redis, redis.cluster.RedisCluster(startup_nodes=seeds, socket_timeout=5))

    def primary_of(self, key: bytes) -> Node:
        """The live primary that owns `key`'s slot."""
        with contextlib.closing(self.client()) as c:
            port = cast(redis.cluster.RedisCluster, c).get_node_from_key(key).port  # type: ignore[no-untyped-call]
        return next(n for n in self.nodes if n.port == int(port))

    def wait_failover(self, dead: Node, timeout: float = 60) -> None:
        """Until a replica of the killed primary `dead` is a primary and the cluster is ok."""
        assert not dead.alive()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError):
                if len(self.primaries()) == self.primary_count:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica took over from {dead.address}")
            time.sleep(0.1)
        self.wait_stable(max(1.0, deadline - time.monotonic()))

    def reshard(self, source: Node, target: Node, slots: int) -> None:
        """Move `slots` slots (and their keys) from `source` to `target` with redis-cli."""
        self.cli(
            "--cluster", "reshard", target.address, "--cluster-from", source.node_id(), "--cluster-to",
            target.node_id(), "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "100",
        )  # fmt: skip

    def replicated(self, timeout: float = 30) -> None:
        """Until every replica has received all its primary sent (master_repl_offset)."""
        deadline = time.monotonic() + timeout
        while True:
            done = True
            for node in self.primaries():
                with contextlib.closing(node.client()) as c:
                    info = c.info("replication")
                offset = int(info["master_repl_offset"])
                for i in range(int(info["connected_slaves"])):
                    if int(info[f"slave{i}"]["offset"]) < offset:
                        done = False
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("replicas did not catch up")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
