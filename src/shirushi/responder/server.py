"""The HTTP side of the responder: one asyncio Protocol per connection. Does network I/O.

Per request (docs/standards.md, hot-path rules): one bounded head parse, one memoised request
decode (routing.py), one L1 or Redis lookup, one write. No router, no logging on success, no per-request
timers: one ticker per worker refreshes the clock and the Date line, expires slow or idle peers
and checks Redis. With `ocsp.access_log` set, each answer also appends one tuple to the access
log's buffer (accesslog.py), which writes it out in batches.

Protocol behaviour (standards P12, P13, P20; RFC 9112):

* HTTP/1.1 persistent connections and HTTP/1.0 (closed after the answer unless it asked for
  keep-alive); pipelined requests are answered strictly in order: while one waits for Redis, the
  following ones stay in the buffer, and reading pauses when that buffer is full;
* `POST` (any path) with the DER body, `GET`/`HEAD /{base64}`; any other method gets 405 with
  Allow; OCSP-level failures are HTTP 200 with an unsigned OCSP error body (nginx and HAProxy
  require 200);
* bounded header block, request-target and body (`ocsp.max_request_bytes`, RFC 9919 8.4);
  a peer that sends a request too slowly gets 408, an idle one is closed, one that stops reading
  our answers is cut off.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, cast

from shirushi.responder import accesslog, responses
from shirushi.responder.accesslog import NOT_MODIFIED, SUCCESSFUL
from shirushi.responder.http1 import Head, HTTPError, decode_chunked, parse_head
from shirushi.responder.lookup import Result
from shirushi.responder.responses import Answer
from shirushi.responder.routing import GET, HEAD, NO_ROUTE, POST, REFUSED, Responder, Route, remember
from shirushi.responder.tally import NO_STATUS

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NEVER: Final = float("inf")


class HTTPConnection(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "buf",
        "client",
        "closing",
        "continue_sent",
        "deadline",
        "head",
        "linger_bytes",
        "partial",
        "peer_eof",
        "read_paused",
        "responder",
        "route",
        "transport",
        "waiting",
        "waiting_since",
        "write_paused",
    )

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.client = b"-"  # the peer's IP address, for the access log only
        self.head: Head | None = None
        self.route: Route = NO_ROUTE
        self.waiting = False
        self.waiting_since = 0.0
        self.closing = False
        self.partial = False
        self.peer_eof = False
        self.continue_sent = False
        self.read_paused = False
        self.write_paused = False
        self.linger_bytes = 0
        self.deadline = _NEVER

    # --- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        tcp = cast(asyncio.Transport, transport)
        responder = self.responder
        if len(responder.connections) >= responder.options.max_connections:
            tcp.abort()
            return
        self.transport = tcp
        responder.connections.add(self)
        if responder.access_log is not None:
            self.client = _client_address(tcp)
        self.deadline = responder.idle_deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.responder.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.buf or self.waiting or self.closing:
            self._data_slow(data)
            return
        # Fast path: a chunk holding exactly one request seen before (the same client asking
        # again on a persistent connection, or many clients asking about a popular certificate).
        route = self.responder.routes.of(data).get(data)
        if route is None:
            self.buf = data
            self._process(data)
            return
        self.route = route
        self._dispatch(route)
        if not self.waiting:
            self.deadline = self.responder.idle_deadline
            if self.peer_eof:
                self._close_if_eof()

    def _data_slow(self, data: bytes) -> None:
        if self.closing:
            # Lingering after a refusal: drain, so that our answer is not lost to a TCP reset.
            self.linger_bytes += len(data)
            if self.linger_bytes > 1 << 20 and self.transport is not None:
                self.transport.abort()
            return
        self.buf = self.buf + data if self.buf else data
        if self.waiting:
            if len(self.buf) > self.responder.options.max_buffer:
                self._pause_reading()
            return
        self._process(None)

    def eof_received(self) -> bool:
        # The peer will send nothing more (it may still read): answer the complete requests
        # already buffered, then close. Returning True keeps our side open meanwhile.
        if self.closing:
            return False
        self.peer_eof = True
        if not self.waiting:
            self._process(None)
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()
        self.deadline = self.responder.mono + self.responder.options.send_timeout

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.waiting:
            self._resume_reading()
            self._set_idle_or_partial()

    # --- request processing ----------------------------------------------------------------

    def _process(self, whole: bytes | None) -> None:
        """Answer the complete requests in the buffer, in order, until one has to wait.

        `whole` is the received chunk when it started an empty buffer: if it turns out to be
        exactly one request, its route is remembered for the fast path.
        """
        responder = self.responder
        while not self.waiting and not self.closing:
            buf = self.buf
            if not buf:
                self.partial = False
                self.deadline = responder.idle_deadline
                self._close_if_eof()
                return
            head = self.head
            try:
                if head is None:
                    head = parse_head(buf, 0, responder.max_head, responder.max_target)
                    if head is None:
                        self._await_more(None)
                        return
                    self.head = head
                if head.chunked:
                    decoded = decode_chunked(buf, head.end, responder.max_body)
                    if decoded is None:
                        self._await_more(head)
                        return
                    body, end = decoded
                else:
                    if head.content_length > responder.max_body:
                        raise HTTPError(413)
                    end = head.end + head.content_length
                    if len(buf) < end:
                        self._await_more(head)
                        return
                    body = buf[head.end : end]
            except HTTPError as exc:
                self._refuse(exc.code)
                return
            self.head = None
            self.continue_sent = False
            self.partial = False
            self.buf = buf[end:]
            route, repeatable = responder.route(head, body)
            if repeatable and whole is not None and end == len(whole) and buf is whole:
                remember(responder.routes, whole, route, responder.memo_shard_size)
            whole = None
            self.route = route
            self._dispatch(route)

    def _await_more(self, head: Head | None) -> None:
        """The request is incomplete: start its deadline, let curl send a body it holds back."""
        if head is not None and head.expect_continue and not self.continue_sent:
            # RFC 9110 10.1.1: curl waits for this before sending a larger POST body.
            self.continue_sent = True
            if self.transport is not None:
                self.transport.write(CONTINUE)
        if not self.partial:
            self.partial = True
            self.deadline = self.responder.mono + self.responder.options.request_timeout
        self._close_if_eof()

    def _close_if_eof(self) -> None:
        """Nothing complete is left to answer; after the peer's EOF that means we are done."""
        if self.peer_eof and self.transport is not None:
            self.closing = True
            self.transport.close()

    def _dispatch(self, route: Route) -> None:
        kind, plan, _, _, _, _ = route
        if kind == REFUSED:
            self._refuse(405)
            return
        if isinstance(plan, int):
            self._finish(plan)
            return
        lookup = self.responder.lookup
        answer = lookup.cached(plan)
        if answer is not None:
            self._finish(answer)
            return
        immediate = lookup.fetch(plan, self._on_result)
        if immediate is not None:
            self._finish(immediate)
            return
        self.waiting = True
        self.waiting_since = time.perf_counter()
        self.deadline = _NEVER  # the lookup is bounded by the Redis timeout

    def _on_result(self, result: Result) -> None:
        self.waiting = False
        self.responder.tally.waited_for(time.perf_counter() - self.waiting_since)
        if self.transport is None:
            return
        self._finish(result)
        if not self.closing:
            if not self.write_paused:
                self._resume_reading()
            self._process(None)

    def _finish(self, result: Result) -> None:
        transport = self.transport
        if transport is None:
            return
        responder = self.responder
        kind, _, connection, keep_alive, if_none_match, tag = self.route
        outcome = SUCCESSFUL
        if isinstance(result, Answer):
            if connection is responses.KEEP and if_none_match is None:
                if kind == GET:
                    data = result.get_keep(responder.now, responder.max_age, responder.date)
                elif kind == POST:
                    data = result.post_keep(responder.now, responder.max_age, responder.date)
                else:
                    data = result.get(responder.now, responder.max_age, responder.date, connection, True)
            elif kind == POST:
                data = result.post(responder.date, connection)
            elif if_none_match is not None and result.matches(if_none_match):
                data = result.not_modified(responder.now, responder.max_age, responder.date, connection)
                outcome = NOT_MODIFIED
            else:
                data = result.get(responder.now, responder.max_age, responder.date, connection, kind == HEAD)
        else:
            data = responses.ocsp_error(result, responder.date, connection, kind == HEAD)
            outcome = accesslog.OCSP_ERRORS[result]
        transport.write(data)
        responder.tally.count(kind, outcome, result.status if isinstance(result, Answer) else NO_STATUS)
        if responder.access_log is not None:
            responder.access_log.record(self.client, tag, outcome, len(data))
        if not keep_alive:
            self.closing = True
            transport.close()

    def _refuse(self, code: int) -> None:
        """Answer an HTTP-level refusal and close, lingering so the peer can read it."""
        transport = self.transport
        self.closing = True
        self.head = None
        self.buf = b""
        if transport is None:
            return
        data = responses.http_error(code, self.responder.date)
        transport.write(data)
        self.responder.tally.count(REFUSED, accesslog.refusal(code), NO_STATUS)
        if self.responder.access_log is not None:
            self.responder.access_log.record(self.client, accesslog.REFUSED_TAG, accesslog.refusal(code), len(data))
        self._resume_reading()
        self.deadline = self.responder.mono + self.responder.options.linger
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    def expire(self) -> None:
        """The deadline passed: 408 for a half-sent request, silence for an idle peer."""
        transport = self.transport
        if transport is None:
            self.responder.connections.discard(self)
            return
        if self.closing or self.write_paused:
            transport.abort()
        elif self.partial:
            self._refuse(408)
        else:
            self.closing = True
            transport.close()

    def _set_idle_or_partial(self) -> None:
        options = self.responder.options
        if self.partial:
            self.deadline = self.responder.mono + options.request_timeout
        else:
            self.deadline = self.responder.idle_deadline

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()


def _client_address(transport: asyncio.Transport) -> bytes:
    """The peer's IP address as text; "-" when the socket has none (a unix socket in tests)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0].encode("ascii", "replace")
    return b"-"
