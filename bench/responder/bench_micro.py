"""In-process costs behind the responder's choices: request parsing, HTTP head parsing, Redis client.

* OCSP request: `shirushi.responder.request.parse_request` (pyca/cryptography's loader plus the
  checks it leaves to us) vs asn1crypto's `OCSPRequest.load` with the same fields read;
* HTTP head: `shirushi.responder.http1.parse_head` vs httptools' parser (llhttp) with callbacks;
* Redis GET of a 1.4 KB record with 50 requests in flight: redis-py's asyncio client vs the
  responder's pipelined `resp.Link`, over a unix socket to a private redis-server;
* the access log (`ocsp.access_log`): `AccessLog.record` per request, and the same with its
  share of the batched formatting, `stat` and `os.write` to a file in a temporary directory;
* the whole fast path of a repeated GET (`HTTPConnection.data_received`: memo, L1 cache, render,
  write to a transport that discards the bytes), with the access log off and on, and with the
  metrics off (a tally that counts nothing) and on (prometheus_client in multiprocess mode, as
  `serve` runs it: the per-request tally plus its share of the worker's flush, here one flush
  every `FLUSH_EVERY` requests, i.e. 4 flushes a second at 10,000 requests a second per worker).

    .venv/bin/python bench/responder/bench_micro.py
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
import timeit
from itertools import count
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from shirushi.cache import records  # noqa: E402
from shirushi.metrics.registry import prepare_directory  # noqa: E402
from shirushi.responder import accesslog, resp, respwire  # noqa: E402
from shirushi.responder.http1 import parse_head  # noqa: E402
from shirushi.responder.issuers import load_issuers  # noqa: E402
from shirushi.responder.lookup import Lookup  # noqa: E402
from shirushi.responder.request import parse_request  # noqa: E402
from shirushi.responder.responses import Answer  # noqa: E402
from shirushi.responder.routing import Options, Responder  # noqa: E402
from shirushi.responder.server import HTTPConnection  # noqa: E402
from support.ocsp_pki import RedisProcess, build_pki, der_cert_id, der_extension, der_request, get_path, octets  # noqa: E402

PLAIN = der_request([der_cert_id(0x1234567890ABCDEF1234)])
NONCE = der_request(
    [der_cert_id(0x1234567890ABCDEF1234)],
    extensions=[der_extension("1.3.6.1.5.5.7.48.1.2", octets(b"n" * 16))],
)
HEAD = (
    b"GET /MEIwQDA%2BMDwwOjAJBgUrDgMCGgUABBT7 HTTP/1.1\r\nHost: ocsp.example.jp\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n"
)


def per_call(fn: object, number: int = 100000) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6  # type: ignore[arg-type]


def best_per_call(fn: object, number: int, repeat: int = 5) -> float:
    """µs per call, the best of `repeat` runs with the garbage collector on (as in a worker)."""
    timer = timeit.Timer(fn, setup="gc.enable()", globals={"gc": gc})  # type: ignore[arg-type]
    return min(timer.repeat(repeat, number)) / number * 1e6


def asn1crypto_fields(der: bytes) -> tuple[object, ...]:
    from asn1crypto import ocsp

    request = ocsp.OCSPRequest.load(der)
    tbs = request["tbs_request"]
    cert_id = tbs["request_list"][0]["req_cert"]
    for ext in tbs["request_extensions"] or []:
        ext["extn_value"].parsed  # noqa: B018 - the nonce length check needs it parsed
    return (
        cert_id["hash_algorithm"]["algorithm"].native,
        cert_id["issuer_name_hash"].native,
        cert_id["issuer_key_hash"].native,
        cert_id["serial_number"].native,
    )


def httptools_parser() -> object:
    """One parser, fed one keep-alive request per call (as on a persistent connection)."""
    import httptools

    class Sink:
        url = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            pass

    parser = httptools.HttpRequestParser(Sink())
    return lambda: parser.feed_data(HEAD)


async def redis_rates(url: str, total: int = 40000, concurrency: int = 50) -> tuple[float, float]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, max_connections=concurrency)
    await client.set("bench:key", b"x" * 1400)

    async def worker(n: int) -> None:
        for _ in range(n):
            await client.get("bench:key")

    start = time.perf_counter()
    await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    redis_py = total / (time.perf_counter() - start)
    await client.aclose()

    loop = asyncio.get_running_loop()
    link = resp.Link(loop, resp.Address(url), 2.0)
    link.kick()
    while link.conn is None:
        await asyncio.sleep(0.01)
    cmd = respwire.command(b"GET", b"bench:key")
    done = loop.create_future()
    left = [total]
    in_flight = [0]

    def on_reply(value: object) -> None:
        in_flight[0] -= 1
        left[0] -= 1
        if left[0] == 0:
            done.set_result(None)
        elif left[0] >= in_flight[0] + 1:
            in_flight[0] += 1
            link.send(cmd, on_reply)

    start = time.perf_counter()
    for _ in range(concurrency):
        in_flight[0] += 1
        link.send(cmd, on_reply)
    await done
    own = total / (time.perf_counter() - start)
    link.close()
    return redis_py, own


def access_log_costs(directory: Path, number: int = 200000) -> tuple[float, float]:
    """(µs per `record` alone, µs per request with formatting and writing), both amortised."""
    loop = asyncio.new_event_loop()
    try:
        sink = accesslog.AccessLog(directory / "access.log", loop)
        sink.open()
        tag = b"GET\t" + accesslog.cert_id_fields(0x1234567890ABCDEF1234567890ABCDEF, "sha1")
        record = sink.record
        entries = sink.entries
        limit = accesslog.FLUSH_LINES - 1

        def record_only() -> None:
            record(b"192.0.2.7", tag, accesslog.SUCCESSFUL, 1693)
            if len(entries) >= limit:
                entries.clear()  # never reaches the flush

        alone = best_per_call(record_only, number)
        entries.clear()
        full = best_per_call(lambda: record(b"192.0.2.7", tag, accesslog.SUCCESSFUL, 1693), number)
        sink.close()
        return alone, full
    finally:
        loop.close()


class NullTransport:
    """Enough of an asyncio transport for HTTPConnection; what is written is dropped."""

    def get_extra_info(self, name: str) -> object:
        return ("192.0.2.7", 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        pass


FLUSH_EVERY = 2500


class NoTally:
    """The responder without metrics: nothing counted."""

    def count(self, kind: int, outcome: bytes, status: int) -> None:
        pass

    def waited_for(self, seconds: float) -> None:
        pass

    def flush(self, lookup: Lookup) -> None:
        pass


def tally_costs(number: int = 200000) -> tuple[float, float, float]:
    """µs per `Tally.count` (the per-request part), per no-op count (what the fast path pays
    with metrics off), and per `flush` of one request kind (the ticker's part, multiprocess
    mode); the two counts timed in alternation, best of 7 each."""
    from types import SimpleNamespace

    from shirushi.responder.tally import GOOD, Tally

    tally = Tally()
    assert tally.enabled
    outcome = b"successful\t200"
    none = NoTally()
    per_request = nothing = float("inf")
    for _ in range(7):
        per_request = min(per_request, best_per_call(lambda: tally.count(0, outcome, GOOD), number, repeat=1))
        nothing = min(nothing, best_per_call(lambda: none.count(0, outcome, GOOD), number, repeat=1))
    lookup = SimpleNamespace(l1_hits=0, l1_misses=0, failures=0, connects=0)

    def flush() -> None:
        tally.count(0, outcome, GOOD)
        lookup.l1_hits += 1
        tally.flush(lookup)  # type: ignore[arg-type]

    return per_request, nothing, best_per_call(flush, number // 20)


FAST_PATHS = (
    ("access log off, metrics off", False, False),
    ("access log off, metrics on", False, True),
    ("access log on, metrics on", True, True),
)


def fast_path_costs(directory: Path, number: int = 100000, rounds: int = 7) -> list[float]:
    """µs per repeated GET through `HTTPConnection.data_received`, one per `FAST_PATHS` case.

    The two are timed in alternation, `rounds` times each, and the best of each is kept, so that
    a burst of load from other processes does not land on one side only."""
    pki = build_pki(directory / "pki", "http://127.0.0.1/")
    issuers = load_issuers(pki.directory / "issuers.pem")
    serial = 0x1234567890ABCDEF
    der, this_update, next_update = pki.response(serial)
    record = records.make_record(
        der, int(this_update.timestamp()), int(next_update.timestamp()), int(next_update.timestamp())
    )
    request_der = pki.request_der(serial)
    plan = issuers.plan(parse_request(request_der))  # type: ignore[arg-type]
    request = b"GET %s HTTP/1.1\r\nHost: ocsp.example.jp\r\n\r\n" % get_path(request_der).encode()
    calls = []
    sinks = []
    loop = asyncio.new_event_loop()
    try:
        for _, logged, counted in FAST_PATHS:
            sink = accesslog.AccessLog(directory / "access.log", loop) if logged else None
            if sink is not None:
                sink.open()
                sinks.append(sink)
            lookup = Lookup(loop, resp.Address("redis://127.0.0.1:1"), 1.0)  # never connected
            responder = Responder(issuers, lookup, b"", 3600, 8192, Options(), sink)
            if not counted:
                responder.tally = NoTally()  # type: ignore[assignment]
            lookup.l1.set_alive(True)
            assert not isinstance(plan, int)
            lookup.l1.put(plan.key, Answer.of(record), responder.now, lookup.l1.generation)
            conn = HTTPConnection(responder)
            conn.connection_made(NullTransport())  # type: ignore[arg-type]
            conn.data_received(request)  # decoded once, then served from the memo
            assert not counted or responder.tally.enabled
            served = count(1)

            # The same wrapper on every side, so that only the tally differs.
            def call(c: HTTPConnection = conn, r: Responder = responder, lk: Lookup = lookup, n: Any = served) -> None:
                c.data_received(request)
                if next(n) % FLUSH_EVERY == 0:  # the worker's ticker, 4 times a second
                    r.tally.flush(lk)

            calls.append(call)
        best = [float("inf")] * len(calls)
        for _ in range(rounds):
            for i, call in enumerate(calls):
                best[i] = min(best[i], best_per_call(call, number, repeat=1))
        for sink in sinks:
            sink.close()
    finally:
        loop.close()
    return best


def main() -> int:
    print("| operation | cost |")
    print("| --- | ---: |")
    print(f"| parse_request, plain SHA-1 request | {per_call(lambda: parse_request(PLAIN)):.1f} µs |")
    print(f"| parse_request, with a 16-octet nonce | {per_call(lambda: parse_request(NONCE)):.1f} µs |")
    print(f"| asn1crypto load + same fields, plain | {per_call(lambda: asn1crypto_fields(PLAIN), 20000):.1f} µs |")
    print(f"| asn1crypto load + same fields, nonce | {per_call(lambda: asn1crypto_fields(NONCE), 20000):.1f} µs |")
    print(f"| http1.parse_head, 4 header fields | {per_call(lambda: parse_head(HEAD, 0, 16384, 8192)):.1f} µs |")
    try:
        print(f"| httptools parser + callbacks, same head | {per_call(httptools_parser()):.1f} µs |")
    except ImportError:
        print("| httptools parser + callbacks, same head | (httptools not installed) |")
    memo = {HEAD: 1}
    print(f"| memo lookup of the whole request bytes | {per_call(lambda: memo.get(bytes(HEAD))):.2f} µs |")
    with tempfile.TemporaryDirectory(prefix="shirushi-micro-") as tmp, RedisProcess(Path(tmp)) as server:
        import uvloop

        redis_py, own = uvloop.run(redis_rates(server.url))
    print(f"| redis-py asyncio GET, 50 in flight | {redis_py:,.0f} /s |")
    print(f"| resp.Link pipelined GET, 50 in flight | {own:,.0f} /s |")
    with tempfile.TemporaryDirectory(prefix="shirushi-micro-") as tmp:
        alone, full = access_log_costs(Path(tmp))
    print(f"| access log: `record` (one tuple appended) | {alone:.2f} µs |")
    print(f"| access log: `record` + batched format, stat, os.write, per request | {full:.2f} µs |")
    with tempfile.TemporaryDirectory(prefix="shirushi-micro-") as tmp:
        # As `serve` sets it up: before prometheus_client is first imported (metrics/registry.py).
        prepare_directory(Path(tmp) / "metrics")
        costs = fast_path_costs(Path(tmp))
        count_us, nothing_us, flush_us = tally_costs()
    extra = count_us - nothing_us + flush_us / FLUSH_EVERY
    print(f"| metrics: `Tally.count`, per request | {count_us:.3f} µs |")
    print(f"| metrics off: the no-op count in its place | {nothing_us:.3f} µs |")
    print(f"| metrics: `Tally.flush` of one request kind and the L1 counter | {flush_us:.1f} µs |")
    print(f"| metrics: added per request, count - no-op + flush / {FLUSH_EVERY:,} | {extra:.3f} µs |")
    for (name, _, _), cost in zip(FAST_PATHS, costs, strict=True):
        print(f"| repeated GET, whole fast path, {name} | {cost:.2f} µs |")
    print(f"| metrics on / off, access log off, whole fast path | {costs[1] / costs[0]:.3f} |")
    print(f"| metrics on / off, from the parts: 1 + added / fast path off | {1 + extra / costs[0]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
