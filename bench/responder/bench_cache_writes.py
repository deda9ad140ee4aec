"""CPU per record of the cache writer's compare-and-set, client and redis-server, in isolation.

Writes `--records` records of 600 bytes (128 per script call, one `ZADD` of due times per 256,
as `CacheWriter.put` sends them) to a private redis-server on a unix socket, into an empty server
and again over the records already there, with the writer's script (cache/writer.py: `SET NX`
first) and with the script it replaced (`GETRANGE`, then `SET`). Reports this process's CPU time
and redis-server's (/proc) per record, and whether redis-py packs with hiredis; run it in a
virtualenv without hiredis for the other half of that comparison.

    .venv/bin/python bench/responder/bench_cache_writes.py [--records 200000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import redis
import redis.utils
from bench_refill_stages import cpu_seconds

from shirushi.cache.writer import _SET_UNLESS_NEWER, SCRIPT_KEYS
from support.ocsp_pki import RedisProcess

# The compare-and-set before `SET NX` came first: two calls per record whether the key exists or not.
GETRANGE_FIRST = """
local stored = 0
for i, key in ipairs(KEYS) do
  local value = ARGV[2 * i - 1]
  local old = redis.call('GETRANGE', key, 1, 8)
  if old == '' or old <= string.sub(value, 2, 9) then
    redis.call('SET', key, value, 'EX', ARGV[2 * i])
    stored = stored + 1
  end
end
return stored
"""


def write_all(client: redis.Redis, script: str, keys: list[str], value: bytes) -> None:
    call = client.register_script(script)
    for start in range(0, len(keys), 2 * SCRIPT_KEYS):
        pipe = client.pipeline(transaction=False)
        part = keys[start : start + 2 * SCRIPT_KEYS]
        for i in range(0, len(part), SCRIPT_KEYS):
            chunk = part[i : i + SCRIPT_KEYS]
            call(keys=chunk, args=[a for _ in chunk for a in (value, 3600)], client=pipe)
        pipe.zadd("due", {format(start + i, "x"): 1 for i in range(0, len(part), 2)})
        pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    value = b"\x00" + (1).to_bytes(8, "big") + os.urandom(591)  # status version 1, as records.py packs it
    keys = [f"shirushi:ocsp:{{0123456789abcdef}}:{i:x}:sha1" for i in range(args.records)]
    packer = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "Python"
    print(f"{args.records} records of {len(value)} bytes, redis-py with {packer}; CPU us per record:")
    for name, script in (("SET NX first (now)", _SET_UNLESS_NEWER), ("GETRANGE first (before)", GETRANGE_FIRST)):
        with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp, RedisProcess(Path(tmp)) as server:
            assert server.proc is not None
            client = server.client()
            for phase in ("empty server", "keys present"):
                before, started = cpu_seconds(server.proc.pid), time.process_time()
                write_all(client, script, keys, value)
                spent = time.process_time() - started
                time.sleep(0.2)  # redis-server's stat is updated on the clock tick
                served = cpu_seconds(server.proc.pid) - before
                per = 1e6 / args.records
                print(f"  {name:24} {phase:13} client {spent * per:5.2f}  redis-server {served * per:5.2f}")
            client.close()


if __name__ == "__main__":
    main()
