"""A working set of many distinct OCSP requests and their records, for the random-mix benchmarks.

N CertIDs (serials BASE+1 .. BASE+N, 3 SHA-1 : 1 SHA-256, as relying parties send them), each
asked by GET or by POST (chosen at random once, so the set holds N distinct request byte strings).

Records: signing N responses with RSA-2048 takes minutes, and the responder never verifies a
signature, so one response per algorithm is signed and copied with the serial's octets replaced
(all serials have the same length, so the DER stays well formed; the copies' signatures do not
verify, which only a relying party would notice). Every record is stored under its own key, so
every request costs the responder exactly what a real one does.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import redis

from shirushi.cache import records
from support.ocsp_pki import PKI, get_path

BASE = 0x4000_0000_0000_0000  # 8 octets, no leading zero octet: every serial encodes alike


@dataclasses.dataclass(frozen=True)
class Item:
    serial: int
    alg: str
    method: str  # "GET" | "POST"
    raw: bytes  # the whole HTTP request as wrk sends it
    path: str  # GET path (also usable for POST targets: "/")
    body: bytes  # DER request (POST body)


def serial_octets(serial: int) -> bytes:
    return serial.to_bytes(8, "big")


def build_items(pki: PKI, count: int, host: str, seed: int = 7) -> list[Item]:
    rng = random.Random(seed)
    items = []
    for i in range(1, count + 1):
        serial = BASE + i
        alg = "sha256" if i % 4 == 0 else "sha1"
        der = pki.request_der(serial, alg)
        path = get_path(der)
        if rng.random() < 0.5:
            raw = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode())
            items.append(Item(serial, alg, "GET", raw, path, der))
        else:
            raw = (
                b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\n"
                b"Content-Length: %d\r\n\r\n" % (host.encode(), len(der))
            ) + der
            items.append(Item(serial, alg, "POST", raw, path, der))
    return items


def load_records(pki: PKI, client: redis.Redis, items: list[Item]) -> dict[int, bytes]:
    """Store a record for every item; returns the DER by serial (for checks)."""
    templates = {}
    for alg in records.HASH_ALGORITHMS:
        der, this_update, next_update = pki.response(BASE, alg)
        assert der.count(serial_octets(BASE)) == 1
        templates[alg] = (der, int(this_update.timestamp()), int(next_update.timestamp()))
    ttl = max(1, templates["sha1"][2] - int(time.time()))
    out = {}
    pipe = client.pipeline(transaction=False)
    for n, item in enumerate(items, 1):
        der, this_update, next_update = templates[item.alg]
        der = der.replace(serial_octets(BASE), serial_octets(item.serial))
        record = records.make_record(der, this_update, next_update, this_update + 86400)
        pipe.set(records.response_key(pki.issuer_id, item.alg, item.serial), record.pack(), ex=ttl)
        out[item.serial] = der
        if n % 5000 == 0:
            pipe.execute()
    pipe.execute()
    pki.mark_complete(client)
    return out


def write_wrk_script(directory: Path, items: list[Item]) -> Path:
    """A wrk Lua script sending the items' raw requests, uniformly at random."""
    data = directory / "mix.bin"
    lengths = directory / "mix.len"
    data.write_bytes(b"".join(i.raw for i in items))
    lengths.write_text("".join(f"{len(i.raw)}\n" for i in items))
    script = directory / "mix.lua"
    script.write_text(
        f"""
local reqs = {{}}
local f = io.open("{data}", "rb")
local all = f:read("*a")
f:close()
local pos = 1
for line in io.lines("{lengths}") do
  local n = tonumber(line)
  reqs[#reqs + 1] = string.sub(all, pos, pos + n - 1)
  pos = pos + n
end
local count = #reqs
math.randomseed(os.time())
request = function()
  return reqs[math.random(count)]
end
"""
    )
    return script
