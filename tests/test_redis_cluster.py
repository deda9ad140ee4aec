"""Redis Cluster (`redis.mode = "cluster"`): slots, the responder's routing, and `serve` through it.

A real 6-node cluster (3 primaries, 3 replicas, `redis-cli --cluster create`, tests/support/
redis_cluster.py). The pure tests pin the slot function and the parsers to the cluster spec;
the in-process ones drive `ClusterLink` and `ClusterSubscriber` through a resharding; the end to
end ones issue, revoke, presign and answer with real `serve` and `shirushi responder` processes,
kill a primary under load and reshard under load.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from shirushi.asn1.keys import certid_hashes
from shirushi.cache import records
from shirushi.cache.cluster import key_slot
from shirushi.responder import resp, respwire
from shirushi.responder.cluster_client import (
    ClusterLink,
    ClusterSubscriber,
    command_key,
    command_slot,
    parse_redirect,
    parse_slots,
    target_of,
)
from shirushi.responder.lookup import L1
from support.ocsp_pki import ResponderProcess
from support.pki import make_csr, make_key, split_pem
from support.redis_cluster import RedisCluster
from support.seed import seed_certificates
from support.serving import Site

ISSUER = "0123456789abcdef"
T = TypeVar("T")


# Pure: the slot function and the parsers.


def test_key_slot_is_the_cluster_spec_crc16_with_hash_tags() -> None:
    assert key_slot(b"123456789") == 0x31C3 % 16384  # the spec's CRC16-XMODEM check value
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == key_slot(b"user1000")
    assert key_slot(b"foo{}{bar}") == key_slot(b"foo{}{bar}")  # an empty tag: the whole key
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")  # the first { to the next }


def test_both_certid_records_of_a_certificate_share_a_slot() -> None:
    for serial in (1, 0xABC, (1 << 159) | 12345):
        sha1 = records.response_key(ISSUER, "sha1", serial).encode()
        sha256 = records.response_key(ISSUER, "sha256", serial).encode()
        assert sha1 != sha256 and key_slot(sha1) == key_slot(sha256)
    # Different certificates spread over the cluster.
    assert len({key_slot(records.response_key(ISSUER, "sha1", s).encode()) for s in range(1, 200)}) > 150


def test_command_key_and_redirect_and_slots_parsing() -> None:
    key = records.response_key(ISSUER, "sha1", 0xABC).encode()
    assert command_key(respwire.command(b"GET", key)) == key
    assert command_key(respwire.command(b"SSUBSCRIBE", b"chan")) == b"chan"
    for cmd in (
        respwire.command(b"GET", key),
        respwire.command(b"GET", b"no tag at all"),
        respwire.command(b"GET", b"a{}b{c}"),
        respwire.command(b"GET", b"open{only"),
        respwire.command(b"SET", b"x{tag", b"}value"),  # the value's brace is not the key's
    ):
        assert command_slot(cmd) == key_slot(command_key(cmd)), cmd
    assert parse_redirect(b"MOVED 3999 127.0.0.1:6381") == (3999, ("127.0.0.1", 6381))
    assert parse_redirect(b"ASK 1 [::1]:7000") == (1, ("::1", 7000))
    for bad in (b"MOVED 3999", b"MOVED x 127.0.0.1:1", b"MOVED 16384 127.0.0.1:1", b"ASK 1 host"):
        assert parse_redirect(bad) is None, bad
    reply = [[0, 5460, [b"127.0.0.1", 7000, b"id"], [b"127.0.0.1", 7003, b"id2"]], [5461, 16383, [b"", 7001]]]
    assert parse_slots(reply, ("10.0.0.1", 9)) == [(0, 5460, ("127.0.0.1", 7000)), (5461, 16383, ("10.0.0.1", 7001))]
    for reply_bad in (b"x", [[0, 16384, [b"h", 1]]], [[5, 4, [b"h", 1]]], [[0, 1, []]], [[0, 1, [b"h", b"1"]]]):
        assert parse_slots(reply_bad, ("h", 1)) is None, reply_bad


# A real cluster.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as rc:
        yield rc


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    import uvloop

    return uvloop.run(coro)


async def _get_all(link: ClusterLink, keys: list[bytes]) -> list[object]:
    loop = asyncio.get_running_loop()
    futures = []
    for key in keys:
        future: asyncio.Future[object] = loop.create_future()
        if not link.send(respwire.command(b"GET", key), future.set_result):
            future.set_result("refused")
        futures.append(future)
    return list(await asyncio.gather(*futures))


async def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.redis
def test_cluster_link_routes_every_get_and_follows_a_resharding(cluster: RedisCluster) -> None:
    client = cluster.client()
    values = {records.response_key(ISSUER, "sha1", s).encode(): b"v%d" % s for s in range(1, 3001)}
    pipe = client.pipeline(transaction=False)
    for key, value in values.items():
        pipe.set(key, value)
    pipe.execute()
    keys = list(values)

    async def scenario() -> tuple[int, int, Counter[str]]:
        loop = asyncio.get_running_loop()
        seeds = [("127.0.0.1", cluster.nodes[0].port)]  # one seed: the rest is learnt
        link = ClusterLink(loop, seeds, resp.Address("redis://127.0.0.1/"), 5.0)
        link.kick()
        ticker = asyncio.create_task(_tick(link))
        await _wait(lambda: link.conn is not None, 10)
        assert len(link.links) == 3  # the three primaries
        assert await _get_all(link, keys) == [values[k] for k in keys]
        # Move slots while reading: every GET must still find its record (ASK during the
        # migration of a slot, MOVED after it).
        source, target = cluster.primaries()[:2]
        resharding = asyncio.create_task(asyncio.to_thread(cluster.reshard, source, target, 600))
        outcomes: Counter[str] = Counter()
        while not resharding.done():
            got = await _get_all(link, keys)
            for key, value in zip(keys, got, strict=True):
                outcomes["right" if value == values[key] else repr(value)[:40]] += 1
        await resharding
        got = await _get_all(link, keys)
        outcomes.update("right" if v == values[k] else repr(v)[:40] for k, v in zip(keys, got, strict=True))
        ticker.cancel()
        redirects, refreshes = link.redirects, link.refreshes
        link.close()
        return redirects, refreshes, outcomes

    redirects, refreshes, outcomes = run_loop(scenario())
    assert set(outcomes) == {"right"}, outcomes
    assert redirects > 0 and refreshes >= 2  # the resharding was seen, and the table renewed
    client.close()


async def _tick(link: ClusterLink) -> None:
    while True:
        link.check(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)


@pytest.mark.redis
def test_subscriber_hears_spublish_and_drops_the_cache_when_the_channel_moves(cluster: RedisCluster) -> None:
    channel = records.INVALIDATE_CHANNEL.encode()
    client = cluster.client()

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        link = ClusterLink(loop, [("127.0.0.1", n.port) for n in cluster.live()], resp.Address("redis://h/"), 5.0)
        l1 = L1(1 << 20, 60)
        subscriber = ClusterSubscriber(loop, link, 5.0, l1)
        events: list[str] = []
        real = l1.invalidate

        def invalidate(key: bytes) -> None:
            events.append(key.decode())
            real(key)

        l1.invalidate = invalidate  # type: ignore[method-assign]

        async def tick() -> None:
            while True:
                link.check(loop.time())
                subscriber.check(loop.time())
                await asyncio.sleep(0.05)

        ticker = asyncio.create_task(tick())
        subscriber.start()
        await _wait(lambda: l1.alive, 10)
        await asyncio.to_thread(client.spublish, channel, b"k1")
        await _wait(lambda: events == ["k1"], 5)
        # Move the channel's slot to another primary (it holds no keys: SETSLOT alone moves it).
        slot = key_slot(channel)
        owner = cluster.primary_of(channel)
        other = next(n for n in cluster.primaries() if n is not owner)
        target_id = other.node_id()
        for node in sorted(cluster.primaries(), key=lambda n: n is not other):  # the new owner first
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        await _wait(lambda: not l1.alive, 10)  # sunsubscribe: the cache is bypassed at once
        await _wait(lambda: l1.alive, 10)  # and back, subscribed at the new owner
        assert target_of(subscriber.link).port == other.port
        await asyncio.to_thread(client.spublish, channel, b"k2")
        await _wait(lambda: events == ["k1", "k2"], 5)
        ticker.cancel()
        subscriber.close()
        link.close()
        return events

    assert run_loop(scenario()) == ["k1", "k2"]
    client.close()


# `serve` and `shirushi responder` through the cluster.


class Asker:
    def __init__(self, site: Site) -> None:
        self.issuer = x509.load_pem_x509_certificates((site.data / "certs" / "issuers.pem").read_bytes())[0]

    def ask(self, port: int, serial: int, alg: hashes.HashAlgorithm | None = None) -> str:
        alg = alg or hashes.SHA1()
        name_hash, key_hash = certid_hashes(self.issuer, alg.name)
        der = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, alg).build()
        path = urllib.parse.quote(base64.b64encode(der.public_bytes(serialization.Encoding.DER)).decode(), safe="")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=20) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        response = ocsp.load_der_ocsp_response(body)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return response.response_status.name
        assert response.serial_number == serial
        return response.certificate_status.name


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


class Load:
    """Threads asking for random serials until stopped; every answer is tallied per serial."""

    def __init__(self, asker: Asker, port: int, expected: dict[int, str], threads: int = 4) -> None:
        self.asker, self.port, self.expected = asker, port, expected
        self.stop = threading.Event()
        self.wrong: list[tuple[int, str]] = []
        self.outcomes: Counter[str] = Counter()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        serials = list(self.expected)
        while not self.stop.is_set():
            serial = random.choice(serials)
            try:
                got = self.asker.ask(self.port, serial)
            except OSError as exc:
                got = f"error {exc}"
            self.outcomes[got] += 1
            if got not in (self.expected[serial], "TRY_LATER"):
                self.wrong.append((serial, got))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.mark.e2e
@pytest.mark.redis
def test_serve_issues_revokes_and_answers_through_the_cluster_and_survives_failover_and_resharding(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    env = {
        "SHIRUSHI_REDIS__MODE": "cluster",
        "SHIRUSHI_REDIS__NODES": cluster.seeds,
        "SHIRUSHI_REDIS__URL": "",
        "SHIRUSHI_OCSP__WORKERS": "2",
        "SHIRUSHI_LOG__FORMAT": "json",
    }
    site = Site(tmp_path, **env)
    assert site.cli("init").returncode == 0
    serials = seed_certificates(site.data, 200)
    client = cluster.client()
    with site.serving():
        assert not (site.data / "redis.sock").exists()  # no embedded Redis in cluster mode
        asker = Asker(site)
        issuer = x509.load_pem_x509_certificates((site.data / "certs" / "issuers.pem").read_bytes())[0]
        from shirushi.asn1.keys import issuer_id

        complete = records.complete_key(issuer_id(issuer))
        wait_for(lambda: client.exists(complete), 120, "the start-up presign did not finish")

        # Issue: the follow-up presigns both CertIDs into one slot; the responder answers both.
        (tmp_path / "csr.pem").write_bytes(make_csr(["cluster.example.jp"], key=make_key()))
        result = site.cli("issue", "--csr", str(tmp_path / "csr.pem"))
        assert result.returncode == 0, result.stderr
        issued = split_pem(result.stdout)[0].serial_number
        keys = [records.response_key(issuer_id(issuer), alg, issued).encode() for alg in records.HASH_ALGORITHMS]
        wait_for(lambda: all(client.exists(k) for k in keys), 30, "the issued certificate was not presigned")
        assert cluster.primary_of(keys[0]) is cluster.primary_of(keys[1])
        for _ in range(4):  # both workers have it in their in-process cache now
            assert asker.ask(site.ocsp_port, issued) == "GOOD"
            assert asker.ask(site.ocsp_port, issued, hashes.SHA256()) == "GOOD"

        # Revoke: the new record and its SPUBLISH reach every worker, past their caches.
        revoked = [issued, *serials[:5]]
        for serial in revoked:
            out = site.cli("revoke", format(serial, "X"), "--reason", "superseded")
            assert out.returncode == 0, out.stderr
        for alg in (hashes.SHA1(), hashes.SHA256()):
            wait_for(
                lambda alg=alg: all(asker.ask(site.ocsp_port, issued, alg) == "REVOKED" for _ in range(4)),
                10,
                "the revocation did not reach every worker",
            )
        expected = {s: ("REVOKED" if s in revoked else "GOOD") for s in [*serials, issued]}
        assert {asker.ask(site.ocsp_port, s) for s in serials[:5]} == {"REVOKED"}

        # A second responder without an in-process cache, so that every answer is a cluster GET.
        responder = ResponderProcess(
            tmp_path / "responder",
            {**env, "SHIRUSHI_DATA_DIR": str(site.data), "SHIRUSHI_OCSP__CACHE_MB": "0"},
        ).start()
        try:
            port = responder.port
            assert asker.ask(port, issued) == "REVOKED"

            # Kill the primary holding the issued certificate under load: answers are right or
            # tryLater meanwhile, and right again once its replica took over; nothing was lost.
            cluster.replicated()
            victim = cluster.primary_of(keys[0])
            with Load(asker, port, expected) as load:
                time.sleep(1)
                victim.kill()
                cluster.wait_failover(victim)
                time.sleep(REFRESH_SETTLE)
            assert not load.wrong, load.wrong[:5]
            assert load.outcomes["TRY_LATER"] < sum(load.outcomes.values()), load.outcomes
            wait_for(lambda: asker.ask(port, issued) == "REVOKED", 15, "no answer after the failover")
            after = {s: asker.ask(port, s) for s in expected}
            assert after == expected

            # A revocation after the failover reaches both responders.
            late = serials[10]
            assert site.cli("revoke", format(late, "X"), "--reason", "superseded").returncode == 0
            expected[late] = "REVOKED"
            wait_for(lambda: asker.ask(port, late) == asker.ask(site.ocsp_port, late) == "REVOKED", 10, "late")

            # Reshard under load: no answer lost, not even to tryLater.
            source, target = cluster.primaries()[:2]
            with Load(asker, port, expected) as load:
                time.sleep(0.5)
                cluster.reshard(source, target, 2000)
                time.sleep(0.5)
            assert set(load.outcomes) <= {"GOOD", "REVOKED"}, load.outcomes
            assert not load.wrong, load.wrong[:5]
            assert {s: asker.ask(port, s) for s in expected} == expected
        finally:
            responder.stop()
    client.close()


REFRESH_SETTLE = 6.0  # > cluster_client.REFRESH_EVERY: the table has been renewed since the failover
