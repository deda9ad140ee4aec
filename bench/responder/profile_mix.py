"""In-process profile of the responder over a random mix of many distinct requests (no network).

Drives `HTTPConnection.data_received` (the whole per-request path: memo, head parse, request
decode, L1, rendering, write to a transport that discards the bytes) with requests drawn uniformly
from N distinct ones (bench/responder/mixset.py: GET and POST, SHA-1 and SHA-256). Every answer
is put in the in-process cache first, so Redis is not involved: what is measured is the Python
cost per request, which bounds the responder's rate on one core.

    .venv/bin/python bench/responder/profile_mix.py [--count 100000] [--requests 300000] [--profile]

By default every distinct request is sent once before timing (the steady state); --cold warms with
a third of the stream only, so about a quarter of the timed requests are seen for the first time.
Prints µs per request, the L1 hit rate, and with --profile the top of cProfile's report.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixset import build_items, serial_octets  # noqa: E402

from shirushi.cache import records  # noqa: E402
from shirushi.config import Settings  # noqa: E402
from shirushi.responder import resp  # noqa: E402
from shirushi.responder.issuers import load_issuers  # noqa: E402
from shirushi.responder.lookup import Lookup  # noqa: E402
from shirushi.responder.request import CertID  # noqa: E402
from shirushi.responder.responses import Answer  # noqa: E402
from shirushi.responder.routing import Options, Responder, memo_entries  # noqa: E402
from shirushi.responder.server import HTTPConnection  # noqa: E402
from support.ocsp_pki import build_pki  # noqa: E402


class NullTransport:
    def get_extra_info(self, name: str) -> object:
        return None

    def write(self, data: bytes) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100000, help="distinct CertIDs (default 100000)")
    parser.add_argument("--requests", type=int, default=300000, help="requests timed (default 300000)")
    parser.add_argument("--cache-mb", type=int, default=None, help="ocsp.cache_mb (default: the default)")
    parser.add_argument("--cold", action="store_true", help="warm with a third of the stream only")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shirushi-prof-") as tmp:
        pki = build_pki(Path(tmp) / "pki", "http://127.0.0.1/")
        issuers = load_issuers(pki.directory / "issuers.pem")
        items = build_items(pki, args.count, "127.0.0.1:8080")
    loop = asyncio.new_event_loop()
    cache_bytes = (args.cache_mb if args.cache_mb is not None else Settings().ocsp.cache_mb) << 20
    options = Options(l1_bytes=cache_bytes)
    lookup = Lookup(loop, resp.Address("redis://127.0.0.1:1"), 1.0, options.l1_bytes or 0)  # never connected
    responder = Responder(issuers, lookup, b"", 3600, 8192, options, None, memo_entries(cache_bytes))
    lookup.l1.set_alive(True)
    templates = {}
    for alg in records.HASH_ALGORITHMS:
        der, this_update, next_update = pki.response(records_base := 0x4000_0000_0000_0000, alg)
        templates[alg] = (der, int(this_update.timestamp()), int(next_update.timestamp()), records_base)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for item in items:
        der, this_update, next_update, base = templates[item.alg]
        der = der.replace(serial_octets(base), serial_octets(item.serial))
        record = records.make_record(der, this_update, next_update, this_update + 86400)
        plan = issuers.plan(CertID(item.alg, *_hashes(pki, item.alg), item.serial))
        assert not isinstance(plan, int)
        lookup.l1.put(plan.key, Answer.of(record), responder.now, lookup.l1.generation)
    filled = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per = (filled - before) / max(1, len(lookup.l1.entries))
    counted = lookup.l1.bytes / max(1, len(lookup.l1.entries))
    print(f"L1 memory: {per:.0f} bytes per answer (DER {len(templates['sha1'][0])}), counted {counted:.0f}")
    conn = HTTPConnection(responder)
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    rng = random.Random(1)
    stream = [items[rng.randrange(len(items))].raw for _ in range(args.requests)]
    if args.cold:
        for raw in stream[: args.requests // 3]:  # some first sights left, as in a short run
            conn.data_received(raw)
    else:
        for item in items:  # every request seen once: the steady state of a running responder
            conn.data_received(item.raw)
    hits0 = lookup.l1.hits
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for raw in stream:
        conn.data_received(raw)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - start
    print(f"{args.count} distinct requests, {args.requests} timed: {elapsed / args.requests * 1e6:.2f} µs/request")
    print(f"memos: routes {len(responder.routes)}, GET {len(responder.memo_get)}, POST {len(responder.memo_post)}")
    print(f"L1 hits {(lookup.l1.hits - hits0) / args.requests:.1%}, L1 entries {len(lookup.l1.entries)}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    loop.close()
    return 0


def _hashes(pki: object, alg: str) -> tuple[bytes, bytes]:
    from shirushi.asn1.ocsp import IssuerHashes

    issuer = IssuerHashes.of(pki.issuing, alg)  # type: ignore[attr-defined]
    return issuer.name_hash, issuer.key_hash


if __name__ == "__main__":
    raise SystemExit(main())
