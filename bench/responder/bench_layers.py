"""Which HTTP layer for the responder? The same 1.4 KB answer from candidate layers, with wrk.

Each candidate is one process on uvloop answering every GET with the same prebuilt response (no
OCSP work, no Redis), so only the HTTP layer differs:

* `constant`    asyncio Protocol that only looks for the blank line: the ceiling;
* `http1`       asyncio Protocol with `shirushi.responder.http1.parse_head` per request (the
                responder's own bounded parser, without its route memo);
* `http1-memo`  the same plus the responder's memo of whole request bytes (its fast path);
* `httptools`   asyncio Protocol with httptools' HttpRequestParser (llhttp) and callbacks;
* `uvicorn`     a bare ASGI app on uvicorn (uvloop + httptools).

    .venv/bin/python bench/responder/bench_layers.py [--duration 10] [--rounds 2]

Only 127.0.0.1 is loaded; every server is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
BODY = bytes(range(256)) * 5 + bytes(133)  # 1413 bytes, like a presigned response
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: %d\r\n"
    b"Cache-Control: max-age=3600, public, no-transform, must-revalidate\r\n"
    b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n" % len(BODY)
)
RESPONSE = HEAD + BODY
KINDS = ["constant", "http1", "http1-memo", "httptools", "uvicorn"]


class Constant(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            buf = buf[end + 4 :]
            self.transport.write(RESPONSE)
        self.buf = buf


class OwnParser(asyncio.Protocol):
    memo: ClassVar[dict[bytes, bool] | None] = None

    def connection_made(self, transport: Any) -> None:
        from shirushi.responder.http1 import parse_head

        self.parse = parse_head
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        memo = self.memo
        if memo is not None and not self.buf and data in memo:
            self.transport.write(RESPONSE)
            return
        buf = self.buf + data
        whole = data if not self.buf else None
        while buf:
            head = self.parse(buf, 0, 16384, 8192)
            if head is None:
                break
            end = head.end + head.content_length
            if memo is not None and whole is not None and end == len(whole):
                memo[whole] = True
            buf = buf[end:]
            self.transport.write(RESPONSE)
        self.buf = buf


class OwnParserMemo(OwnParser):
    memo: ClassVar[dict[bytes, bool] | None] = {}


class HttpTools(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            self.transport.close()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/ocsp-response"),
                (b"cache-control", b"max-age=3600, public, no-transform, must-revalidate"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve(kind: str, port: int) -> None:
    import uvloop

    if kind == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_app,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        return
    factory = {"constant": Constant, "http1": OwnParser, "http1-memo": OwnParserMemo, "httptools": HttpTools}[kind]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(factory, "127.0.0.1", port)
        print("ready", flush=True)
        await stop.wait()
        server.close()

    uvloop.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(kind: str, duration: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.05)
        done = subprocess.run(
            ["wrk", "-t1", "-c50", f"-d{duration}s", "--timeout", "5s", f"http://127.0.0.1:{port}/MEIwQDA%2BMDw"],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        )
        if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
            raise RuntimeError(done.stdout)
        match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
        assert match, done.stdout
        return float(match.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    results: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            results[kind].append(measure(kind, args.duration))
    print(
        f"\nwrk -t1 -c50 -d{args.duration}s, {args.rounds} round(s) interleaved, median; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| layer | requests/s (median) | runs |")
    print("| --- | ---: | --- |")
    for kind in KINDS:
        runs = ", ".join(f"{r:,.0f}" for r in results[kind])
        print(f"| {kind} | {statistics.median(results[kind]):,.0f} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
