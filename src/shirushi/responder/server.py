"""The HTTP side of the responder: one asyncio Protocol per connection. Does network I/O.

Per request (architecture.md, hot-path rules): one bounded head parse, one memoised request
decode, one L1 or Redis lookup, one write. No router, no logging on success, no per-request
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
import dataclasses
import time
from typing import Final, TypeVar, cast

from shirushi.responder import accesslog, responses
from shirushi.responder.accesslog import NOT_MODIFIED, SUCCESSFUL, AccessLog
from shirushi.responder.http1 import Head, HTTPError, decode_chunked, parse_head
from shirushi.responder.issuers import IssuerMap, Plan
from shirushi.responder.lookup import Lookup, Result
from shirushi.responder.request import MALFORMED_REQUEST, decode_get_path, parse_request
from shirushi.responder.responses import Answer

REFUSED: Final = -1  # any method but GET, HEAD and POST: 405
GET: Final = 0
HEAD: Final = 1
POST: Final = 2
_METHODS: Final = {b"GET": GET, b"HEAD": HEAD, b"POST": POST}
_METHOD_NAMES: Final = {GET: b"GET", HEAD: b"HEAD", POST: b"POST", REFUSED: b"-"}
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
MEMO_ENTRIES: Final = 8192
MEMO_MAX_INPUT: Final = 512
_NEVER: Final = float("inf")
_V = TypeVar("_V")


@dataclasses.dataclass(frozen=True)
class Options:
    """Tunables that are not configuration keys; defaults suit production."""

    l1_entries: int = 50000  # 0 disables the in-process cache
    l1_max_age: int = 60  # seconds an L1 entry may live even with a healthy subscription
    idle_timeout: float = 30.0  # keep-alive connection with no request
    request_timeout: float = 10.0  # from the first byte of a request to its last
    send_timeout: float = 30.0  # a peer that does not read our answers
    linger: float = 2.0  # after a refusal, drain the peer's bytes this long before closing
    max_connections: int = 10000
    max_buffer: int = 65536  # unprocessed input kept per connection before reading pauses
    # Stop when the process that started the responder goes away (set by `shirushi serve`, so a
    # killed backend never leaves responders answering from a cache nobody refreshes).
    exit_with_parent: bool = False


class Responder:
    """Per-worker state shared by all connections: decoding, memos, lookup, clock."""

    def __init__(
        self,
        issuers: IssuerMap,
        lookup: Lookup,
        prefix: bytes,
        max_age: int,
        max_request_bytes: int,
        options: Options,
        access_log: AccessLog | None = None,
    ) -> None:
        self.issuers = issuers
        self.lookup = lookup
        self.prefix = prefix
        self.max_age = max_age
        self.max_body = max_request_bytes
        self.max_target = max_request_bytes
        self.max_head = max_request_bytes + 8192
        self.options = options
        self.access_log = access_log
        self.connections: set[HTTPConnection] = set()
        # Decoding is pure, so its results are reused (bounded, short inputs only): whole
        # request bytes -> Route, GET target -> Decoded, POST body -> Decoded.
        self.routes: dict[bytes, Route] = {}
        self.memo_get: dict[bytes, Decoded] = {}
        self.memo_post: dict[bytes, Decoded] = {}
        self.requests = 0
        self.now = 0
        self.mono = 0.0
        self.idle_deadline = 0.0
        self.date = b""
        self.refresh_clock()

    def refresh_clock(self) -> None:
        now = int(time.time())
        self.mono = time.monotonic()
        self.idle_deadline = self.mono + self.options.idle_timeout
        if now != self.now:
            self.now = now
            self.lookup.now = now
            self.date = responses.date_line(now)
            if self.access_log is not None:
                self.access_log.set_time(now)

    def sweep(self) -> None:
        """Expire slow, idle and non-reading peers."""
        mono = self.mono
        for conn in [c for c in self.connections if c.deadline < mono]:
            conn.expire()

    def route(self, head: Head, body: bytes) -> tuple[Route, bool]:
        """What to do with one parsed request, and whether that is worth remembering."""
        kind = _METHODS.get(head.method, REFUSED)
        repeatable = True
        if kind == POST:
            (plan, fields), repeatable = self.plan_post(body)
        elif kind == REFUSED:
            plan, fields = MALFORMED_REQUEST, accesslog.NO_CERT_ID
        else:
            (plan, fields), repeatable = self.plan_get(head.target)
        if not head.keep_alive:
            connection = responses.CLOSE
        elif head.http10:
            connection = responses.KEEP_10
        else:
            connection = responses.KEEP
        # The access log's "METHOD\tSERIAL\tALG" is built here, once per route: a memoised request
        # is logged without formatting anything.
        tag = _METHOD_NAMES[kind] + b"\t" + fields
        return (kind, plan, connection, head.keep_alive, head.if_none_match, tag), repeatable

    def plan_get(self, target: bytes) -> tuple[Decoded, bool]:
        decoded = self.memo_get.get(target)
        if decoded is not None:
            return decoded, True
        der = decode_get_path(target, self.prefix)
        decoded, repeatable = (_UNDECODABLE, True) if der is None else self._plan(der)
        if repeatable:
            _remember(self.memo_get, target, decoded)
        return decoded, repeatable

    def plan_post(self, body: bytes) -> tuple[Decoded, bool]:
        decoded = self.memo_post.get(body)
        if decoded is not None:
            return decoded, True
        decoded, repeatable = self._plan(body)
        if repeatable:
            _remember(self.memo_post, body, decoded)
        return decoded, repeatable

    def _plan(self, der: bytes) -> tuple[Decoded, bool]:
        """Decode; a request with a nonce is unique, so remembering it would only churn."""
        cert_id = parse_request(der)
        if isinstance(cert_id, int):
            return (cert_id, accesslog.NO_CERT_ID), True
        fields = accesslog.cert_id_fields(cert_id.serial, cert_id.alg)
        return (self.issuers.plan(cert_id), fields), not cert_id.nonce


# A decoded request: plan or OCSP error status, and the access log's "SERIAL\tALG" fields.
Decoded = tuple[Plan | int, bytes]
_UNDECODABLE: Decoded = (MALFORMED_REQUEST, accesslog.NO_CERT_ID)
# (method kind, plan or OCSP error status, Connection header, keep-alive, If-None-Match,
#  access log "METHOD\tSERIAL\tALG")
Route = tuple[int, Plan | int, bytes, bool, bytes | None, bytes]


def _remember(memo: dict[bytes, _V], key: bytes, value: _V) -> None:
    """Bounded, and only for short inputs. A full memo is emptied rather than trimmed: deleting
    the oldest key of a dict again and again makes `next(iter(d))` walk ever more deleted slots
    (measured: a flood of distinct requests fell to a tenth of the rate), and the hot entries
    come back on their next request."""
    if len(key) <= MEMO_MAX_INPUT:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = value


_NO_ROUTE: Route = (GET, MALFORMED_REQUEST, responses.CLOSE, False, None, accesslog.REFUSED_TAG)


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
        "write_paused",
    )

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.client = b"-"  # the peer's IP address, for the access log only
        self.head: Head | None = None
        self.route: Route = _NO_ROUTE
        self.waiting = False
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
        route = self.responder.routes.get(data)
        if route is None:
            self.buf = data
            self._process(data)
            return
        self.responder.requests += 1
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
                _remember(responder.routes, whole, route)
            whole = None
            responder.requests += 1
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
        self.deadline = _NEVER  # the lookup is bounded by the Redis timeout

    def _on_result(self, result: Result) -> None:
        self.waiting = False
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
