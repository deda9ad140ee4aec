"""The answer gap of responders while Redis Sentinel fails over, and the hot path's cost of Sentinel.

Set-up per round (tests/support/sentinel.py): 1 primary, 2 replicas, 3 sentinels on loopback,
down-after-milliseconds 1000; two `shirushi responder` processes in sentinel mode, one reading
the primary, one a replica (redis.read_replicas), no in-process cache (ocsp.cache_mb = 0, so every
answer is a Redis GET); LOADERS threads ask them about a good and a revoked serial, one request at
a time each, on fresh connections. Then:

* crash: SIGKILL the primary;
* planned: `SENTINEL FAILOVER` (the primary is demoted alive; responders move on +switch-master).

Per responder: the answer gap (the longest stretch after the event without a correct answer:
every answer in it was tryLater or a refused connection), the tryLater count, and wrong answers
(must be 0: never "good" for the revoked serial). Reference measured in the same round: how long
the sentinels took (event -> `SENTINEL get-master-addr-by-name` names the new primary), so the
ratio says what the responders add to what Sentinel itself takes.

Hot path: Redis GETs through `resp.Link` with 50 in flight, located once by `resp.Fixed` (the
single-server client) vs by the Sentinel locator, against the same primary, same run.

    .venv/bin/python bench/failover/bench_failover.py [ROUNDS]     # 3 rounds: about 4 minutes
    .venv/bin/python bench/failover/bench_failover.py 0            # the hot path only
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from shirushi.cache import records  # noqa: E402
from shirushi.responder import resp, respwire  # noqa: E402
from shirushi.responder.sentinel import SentinelLocator  # noqa: E402
from support.ocsp_pki import PKI, ResponderProcess, build_pki, get_path, http_exchange, ocsp_status, split_responses  # noqa: E402
from support.sentinel import SERVICE, SentinelSet  # noqa: E402

LOADERS = 4
GOOD, REVOKED = 0x100, 0x101
EXPECT = {GOOD: "SUCCESSFUL/GOOD", REVOKED: "SUCCESSFUL/REVOKED"}


def ask(port: int, pki: PKI, serial: int) -> str:
    try:
        raw = http_exchange(
            port,
            b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % get_path(pki.request_der(serial)).encode(),
            timeout=5,
        )
        responses = split_responses(raw)
    except (OSError, ValueError) as exc:
        return f"error {exc}"
    return ocsp_status(responses[0][2]) if responses else "no answer"


def load(pki: PKI, port: int, stop: threading.Event, out: list[tuple[float, int, str]]) -> None:
    while not stop.is_set():
        for serial in (GOOD, REVOKED):
            out.append((time.monotonic(), serial, ask(port, pki, serial)))


def gap(answers: list[tuple[float, int, str]], since: float) -> tuple[float, int, int]:
    """(longest stretch without a correct answer after `since`, tryLater count, wrong answers)."""
    answers = sorted(a for a in answers if a[0] >= since)
    longest, last_ok = 0.0, since
    try_later = wrong = 0
    for at, serial, status in answers:
        if status == EXPECT[serial]:
            longest = max(longest, at - last_ok)
            last_ok = at
        elif status == "TRY_LATER":
            try_later += 1
        elif status.startswith("SUCCESSFUL"):
            wrong += 1  # a "good" for the revoked serial, or the reverse
    return longest, try_later, wrong


def one_round(directory: Path, pki: PKI, planned: bool) -> dict[str, float]:
    with SentinelSet(directory / "redis").running() as sentinels:
        client = sentinels.client(sentinels.data_ports[0])
        pki.store(client, GOOD)
        pki.store(client, REVOKED, revoked_at=dt.datetime.now(dt.UTC).replace(microsecond=0), reason="keyCompromise")
        client.wait(2, 5000)
        client.close()
        base = {
            **sentinels.env,
            "SHIRUSHI_REDIS__TIMEOUT": "0.5",
            "SHIRUSHI_OCSP__CACHE_MB": "0",
            "SHIRUSHI_OCSP__ISSUERS": str(pki.directory / "issuers.pem"),
        }
        with (
            ResponderProcess(directory / "p", base) as on_primary,
            ResponderProcess(directory / "r", {**base, "SHIRUSHI_REDIS__READ_REPLICAS": "true"}) as on_replica,
        ):
            results: dict[str, list[tuple[float, int, str]]] = {"primary": [], "replica": []}
            stop = threading.Event()
            threads = [
                threading.Thread(target=load, args=(pki, server.port, stop, results[name]), daemon=True)
                for name, server in (("primary", on_primary), ("replica", on_replica))
                for _ in range(LOADERS // 2)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            old = sentinels.primary_port()
            assert old is not None
            event = time.monotonic()
            if planned:
                control = sentinels.client(sentinels.sentinel_ports[0])
                control.execute_command("SENTINEL", "FAILOVER", SERVICE)  # type: ignore[no-untyped-call]
                control.close()
            else:
                sentinels.kill(old)
            while sentinels.primary_port() in (old, None):
                time.sleep(0.005)
            sentinel_took = time.monotonic() - event
            time.sleep(6.0)
            stop.set()
            for thread in threads:
                thread.join(30)
    out = {"sentinel": sentinel_took}
    for name, answers in results.items():
        longest, try_later, wrong = gap(answers, event)
        out[f"{name} gap"] = longest
        out[f"{name} tryLater"] = try_later
        out[f"{name} wrong"] = wrong
        out[f"{name} answers"] = len([a for a in answers if a[0] >= event])
    return out


async def gets(link: resp.Link, key: bytes, count: int, in_flight: int = 50) -> float:
    """Seconds for `count` GETs of `key` with `in_flight` outstanding."""
    cmd = respwire.command(b"GET", key)
    done = asyncio.get_running_loop().create_future()
    sent = received = 0

    def on_reply(value: respwire.Reply) -> None:
        nonlocal sent, received
        received += 1
        if sent < count:
            sent += 1
            link.send(cmd, on_reply)
        elif received == count and not done.done():
            done.set_result(None)

    start = time.perf_counter()
    for _ in range(in_flight):
        sent += 1
        link.send(cmd, on_reply)
    await done
    return time.perf_counter() - start


async def hot_path(sentinels: SentinelSet, key: bytes) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    primary = sentinels.primary_port()
    fixed = resp.Link(loop, resp.Address(f"redis://127.0.0.1:{primary}"), 2.0)
    locator = SentinelLocator(
        loop, [("127.0.0.1", p) for p in sentinels.sentinel_ports], SERVICE, resp.Address("redis://"), 2.0
    )
    located = resp.Link(loop, locator, 2.0)
    rates: dict[str, list[float]] = {"fixed": [], "sentinel": []}
    try:
        for link in (fixed, located):
            link.kick()
        while fixed.conn is None or located.conn is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the ROLE check is answered
        pair = [("fixed", fixed), ("sentinel", located)]
        for _ in range(10):  # alternating which goes first, against the shared machine's drift
            pair.reverse()
            for name, link in pair:
                rates[name].append(20_000 / await gets(link, key, 20_000))
    finally:
        fixed.close()
        located.close()
        locator.close()
    return rates


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        root = Path(tmp)
        pki = build_pki(root / "pki", "http://127.0.0.1:1/")
        with SentinelSet(root / "hot").running() as sentinels:
            client = sentinels.client(sentinels.data_ports[0])
            pki.store(client, GOOD)
            client.close()
            key = records.response_key(pki.issuer_id, "sha1", GOOD).encode()
            rates = asyncio.run(hot_path(sentinels, key))
        print("hot path, Redis GETs/s with 50 in flight, median (min-max) of 10:")
        for name, values in rates.items():
            print(f"  {name:9} {statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})")
        ratios = [s / f for s, f in zip(rates["sentinel"], rates["fixed"], strict=True)]
        low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
        print(f"  sentinel / fixed, per pair: median {mid:.2f} ({low:.2f}-{high:.2f})")
        for planned in (False, True) if rounds else ():
            kind = "planned (SENTINEL FAILOVER)" if planned else "crash (SIGKILL primary)"
            rows = [one_round(root / f"{int(planned)}-{i}", pki, planned) for i in range(rounds)]
            print(f"\n{kind}, {rounds} rounds:")
            for field in rows[0]:
                values = [r[field] for r in rows]
                shown = ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
                print(f"  {field:18} {shown}")
            for name in ("primary", "replica"):
                ratios = [r[f"{name} gap"] / r["sentinel"] for r in rows]
                print(f"  {name} gap / sentinel time: {', '.join(f'{x:.2f}' for x in ratios)}")


if __name__ == "__main__":
    main()
