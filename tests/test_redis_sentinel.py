"""redis.mode = "sentinel" against real servers: 1 primary, 2 replicas, 3 sentinels (tests/support/sentinel.py).

The writer's client and its WAIT for a replica, the responder following a crash failover and a
planned one (+switch-master) under bounded load, reads from replicas, and the invalidation
channel across the move. `serve` end to end is in test_serve_sentinel.py.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from shirushi.cache.connect import replicas_to_wait, sync_client, wait_budget_ms
from shirushi.cache.writer import CacheWriter, Entry
from shirushi.config_status import RedisSettings
from shirushi.errors import ServiceError
from support.ocsp_pki import PKI, ResponderProcess, build_pki, get_path, http_exchange, ocsp_status, split_responses
from support.sentinel import SERVICE, SentinelSet

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

GOOD, REVOKED = "SUCCESSFUL/GOOD", "SUCCESSFUL/REVOKED"
TRY_LATER = "TRY_LATER"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"), "http://127.0.0.1:1/")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path / "redis").running() as s:
        yield s


def settings_for(s: SentinelSet, timeout: float = 1.0, **extra: object) -> RedisSettings:
    return RedisSettings(mode="sentinel", nodes=tuple(s.nodes), sentinel_service=SERVICE, timeout=timeout, **extra)  # type: ignore[arg-type]


def responder_for(pki: PKI, s: SentinelSet, directory: Path, *, replicas: bool = False) -> ResponderProcess:
    return ResponderProcess(
        directory,
        {
            **s.env,
            "SHIRUSHI_REDIS__TIMEOUT": "0.5",
            "SHIRUSHI_REDIS__READ_REPLICAS": "true" if replicas else "false",
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
        },
    )


def ask(port: int, pki: PKI, serial: int) -> str:
    raw = http_exchange(
        port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % get_path(pki.request_der(serial)).encode()
    )
    responses = split_responses(raw)
    if not responses:
        return "NO ANSWER"
    status, _, body = responses[0]
    assert status == 200
    return ocsp_status(body)


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - start


def revoke(pki: PKI, sentinels: SentinelSet, serial: int, replicas: int) -> None:
    """What a revocation writes: the revoked responses, announced, on the primary the sentinels
    name; then wait for the replicas (as the writer does), so that the test's own revocation
    survives the primary's crash. Right after a failover the node the sentinels name can still
    be a replica for a moment, or be demoted again when the sentinels settle on another epoch
    (WAIT refused: "cannot be used with replica instances"); like the outbox, write again on
    the primary named then, within a bound."""
    deadline = time.monotonic() + 15
    while True:
        port = sentinels.primary_port()
        if port is not None:
            client = sentinels.client(port)
            try:
                if client.execute_command("ROLE")[0] == b"master":  # type: ignore[no-untyped-call]
                    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
                    pki.store(client, serial, revoked_at=at, reason="keyCompromise")
                    if client.wait(replicas, 5000) >= replicas:
                        return
            except redis.RedisError:
                pass
            finally:
                client.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"no primary took the revocation of {serial:x} with {replicas} replicas")
        time.sleep(0.1)


class Load:
    """Bounded load from a thread: ask each port about each serial in turn, record every answer."""

    def __init__(self, pki: PKI, ports: list[int], serials: list[int]) -> None:
        self.pki, self.ports, self.serials = pki, ports, serials
        self.answers: list[tuple[float, int, int, str]] = []  # (time, port, serial, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for port in self.ports:
                for serial in self.serials:
                    try:
                        status = ask(port, self.pki, serial)
                    except OSError as exc:
                        status = f"ERROR {exc}"
                    self.answers.append((time.monotonic(), port, serial, status))
            time.sleep(0.002)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_writer_waits_for_a_replica_and_reads_go_to_replicas(sentinels: SentinelSet) -> None:
    # Generous on a loaded machine: a replica's acknowledgement once took over the 0.5 s WAIT
    # budget of timeout = 1.0 here.
    settings = settings_for(sentinels, timeout=4.0, read_replicas=True)
    primary = sync_client(settings, "unix:///unused.sock")
    reader = sync_client(settings, "unix:///unused.sock", for_reads=True)
    writer = CacheWriter(primary, replicas_to_wait(settings), wait_budget_ms(settings))
    try:
        writer.put("0123456789abcdef", [Entry("shirushi:test:a", b"x" * 20, 60)], {}, announce=True)
        assert primary.execute_command("ROLE")[0] == b"master"  # type: ignore[no-untyped-call]
        assert reader.execute_command("ROLE")[0] == b"slave"  # type: ignore[no-untyped-call]
        held = []
        for port in sentinels.data_ports[1:]:  # the WAIT returned once a replica held it
            node = sentinels.client(port)
            held.append(node.get("shirushi:test:a") == b"x" * 20)
            node.close()
        assert any(held)
        primary.wait(2, 5000)
        assert reader.get("shirushi:test:a") == b"x" * 20
        for port in sentinels.data_ports[1:]:
            sentinels.kill(port)
        # No replica left to carry a revocation over a failover: not done, the outbox retries. The
        # WAIT runs out inside the socket timeout, so the error says why (not "Timeout reading").
        with pytest.raises(ServiceError, match="reached 0 replicas of the 1"):
            writer.put("0123456789abcdef", [Entry("shirushi:test:b", b"y" * 20, 60)], {}, announce=True)
        writer.put("0123456789abcdef", [Entry("shirushi:test:c", b"z" * 20, 60)], {})  # a refresh does not wait
    finally:
        primary.close()
        reader.close()


def test_responders_follow_a_crash_failover_under_load(pki: PKI, sentinels: SentinelSet, tmp_path: Path) -> None:
    """Kill -9 the primary while two responders (one reading the primary, one a replica) answer:
    only correct answers or tryLater, never "good" for the revoked serial; after the failover a
    new revocation reaches both within the usual bound (1 s)."""
    good_serial, revoked_serial = 0x51, 0x52
    client = sentinels.client(sentinels.data_ports[0])
    pki.store(client, good_serial)
    client.close()
    revoke(pki, sentinels, revoked_serial, 2)
    with (
        responder_for(pki, sentinels, tmp_path / "p") as on_primary,
        responder_for(pki, sentinels, tmp_path / "r", replicas=True) as on_replica,
    ):
        ports = [on_primary.port, on_replica.port]
        for port in ports:
            assert ask(port, pki, good_serial) == GOOD
            assert ask(port, pki, revoked_serial) == REVOKED
        with Load(pki, ports, [good_serial, revoked_serial]) as load:
            time.sleep(0.5)
            killed_at = time.monotonic()
            old = sentinels.kill_primary()
            sentinels.wait_failover(old)
            failed_over = time.monotonic()
            # Both answer good again from the new topology.
            for port in ports:
                wait_for(lambda port=port: ask(port, pki, good_serial) == GOOD, 15)  # type: ignore[misc]
            time.sleep(0.5)
        wrong = [
            a for a in load.answers if a[3] not in ((GOOD, TRY_LATER) if a[2] == good_serial else (REVOKED, TRY_LATER))
        ]
        assert wrong == [], wrong[:5]
        during = [a for a in load.answers if killed_at <= a[0] <= failed_over]
        assert len(during) > 10  # the load went on through the failover
        print(f"failover took {failed_over - killed_at:.2f} s; {len(load.answers)} answers under load")

        # After the failover a revocation reaches every responder within the bound.
        revoke(pki, sentinels, good_serial, 1)
        for port in ports:
            assert wait_for(lambda port=port: ask(port, pki, good_serial) == REVOKED, 1.0) < 1.0  # type: ignore[misc]


def subscribers(client: redis.Redis) -> list[dict[str, str]]:
    """Clients of one node holding a subscription, the sentinels' own left out."""
    return [
        c
        for c in client.client_list()
        if int(c.get("sub", 0)) > 0 and not str(c.get("name", "")).startswith("sentinel")
    ]


def test_a_planned_failover_moves_the_subscription(pki: PKI, sentinels: SentinelSet, tmp_path: Path) -> None:
    """SENTINEL FAILOVER demotes a live primary: the responder moves its links (and so its
    invalidation subscription) to the new primary on +switch-master, and keeps answering
    revocations written there. The sentinel it watched died first: it watches another."""
    serial = 0x61
    old = sentinels.data_ports[0]
    client = sentinels.client(old)
    pki.store(client, serial)
    client.close()
    with responder_for(pki, sentinels, tmp_path / "p") as server:
        assert ask(server.port, pki, serial) == GOOD
        old_client = sentinels.client(old)
        wait_for(lambda: len(subscribers(old_client)) == 1, 5)
        watched, *others = sentinels.sentinel_ports
        assert f"redis sentinel watch: connected to 127.0.0.1:{watched}" in server.log.read_text()
        sentinels.kill(watched)
        moved = [f"redis sentinel watch: connected to 127.0.0.1:{p}" for p in others]
        wait_for(lambda: any(line in server.log.read_text() for line in moved), 10)
        control = sentinels.client(others[0])
        control.execute_command("SENTINEL", "FAILOVER", SERVICE)  # type: ignore[no-untyped-call]
        control.close()
        new = sentinels.wait_failover(old)
        new_client = sentinels.client(new)
        wait_for(lambda: len(subscribers(new_client)) == 1 and not subscribers(old_client), 5)
        revoke(pki, sentinels, serial, 1)
        assert wait_for(lambda: ask(server.port, pki, serial) == REVOKED, 1.0) < 1.0
        assert "sentinel +switch-master: shirushi" in server.log.read_text()
        old_client.close()
        new_client.close()


def test_an_invalidation_reaches_a_replica_reader(pki: PKI, sentinels: SentinelSet, tmp_path: Path) -> None:
    """With read_replicas the answer and its invalidation both come from one replica: a record
    cached from it is dropped when the primary announces the change (PUBLISH is replicated)."""
    serial = 0x71
    client = sentinels.client(sentinels.data_ports[0])
    pki.store(client, serial)
    assert client.wait(2, 5000) == 2
    with responder_for(pki, sentinels, tmp_path / "r", replicas=True) as server:
        for _ in range(5):
            assert ask(server.port, pki, serial) == GOOD  # now in its in-process cache
        counts = []
        for port in sentinels.data_ports:
            node = sentinels.client(port)
            counts.append(len(subscribers(node)))
            node.close()
        assert counts[0] == 0 and sorted(counts[1:]) == [0, 1]  # on one replica, not the primary
        revoke(pki, sentinels, serial, 2)
        assert wait_for(lambda: ask(server.port, pki, serial) == REVOKED, 1.0) < 1.0
    client.close()
