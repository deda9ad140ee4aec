"""Per-worker request routing: from a parsed HTTP request to what to answer. Pure apart from the clock.

The connection protocol (server.py) hands each complete request here; `Responder.route` decodes
it (memoised: decoding is pure) into a `Route`, the tuple the protocol dispatches on. The shared
per-worker state lives here too: options, the clock and Date line refreshed by the ticker, the
set of open connections the sweep expires.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Final, TypeVar

from shirushi.responder import accesslog, responses
from shirushi.responder.accesslog import AccessLog
from shirushi.responder.http1 import Head
from shirushi.responder.issuers import IssuerMap, Plan
from shirushi.responder.lookup import Lookup
from shirushi.responder.request import MALFORMED_REQUEST, decode_get_path, parse_request
from shirushi.responder.shards import SHARDS, Shards
from shirushi.responder.tally import Tally

if TYPE_CHECKING:
    from shirushi.responder.server import HTTPConnection

REFUSED: Final = -1  # any method but GET, HEAD and POST: 405
GET: Final = 0
HEAD: Final = 1
POST: Final = 2
_METHODS: Final = {b"GET": GET, b"HEAD": HEAD, b"POST": POST}
_METHOD_NAMES: Final = {GET: b"GET", HEAD: b"HEAD", POST: b"POST", REFUSED: b"-"}
MEMO_MIN_ENTRIES: Final = 8192
MEMO_MAX_INPUT: Final = 512
# One decode memo entry holds at most MEMO_MAX_INPUT bytes of input and its small result; sized
# from the answer cache so that the requests of every cached answer are remembered too.
MEMO_BYTES_PER_ENTRY: Final = 2048
_V = TypeVar("_V")


@dataclasses.dataclass(frozen=True)
class Options:
    """Tunables that are not configuration keys; defaults suit production."""

    # Bytes of answers kept in process (lookup.L1); None = `ocsp.cache_mb`, 0 disables the cache.
    l1_bytes: int | None = None
    l1_max_age: int = 300  # seconds an L1 entry may live even with a healthy subscription
    idle_timeout: float = 30.0  # keep-alive connection with no request
    request_timeout: float = 10.0  # from the first byte of a request to its last
    send_timeout: float = 30.0  # a peer that does not read our answers
    linger: float = 2.0  # after a refusal, drain the peer's bytes this long before closing
    max_connections: int = 10000
    max_buffer: int = 65536  # unprocessed input kept per connection before reading pauses
    # Stop when the process that started the responder goes away (set by `shirushi serve`, so a
    # killed backend never leaves responders answering from a cache nobody refreshes).
    exit_with_parent: bool = False

    def cache_bytes(self, cache_mb: int) -> int:
        return cache_mb << 20 if self.l1_bytes is None else self.l1_bytes


def memo_entries(cache_bytes: int) -> int:
    """How many decoded requests each memo keeps, for an answer cache of `cache_bytes`."""
    return max(MEMO_MIN_ENTRIES, cache_bytes // MEMO_BYTES_PER_ENTRY)


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
        memo_size: int = MEMO_MIN_ENTRIES,
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
        self.tally = Tally()  # request counts, flushed into the metrics by the worker's ticker
        # Decoding is pure, so its results are reused (bounded, short inputs only): whole
        # request bytes -> Route, GET target -> Decoded, POST body -> Decoded. Sharded like the
        # answer cache they are sized from; `memo_size` entries each, spread over the shards.
        self.memo_shard_size = max(1, memo_size // SHARDS)
        self.routes: Shards[Route] = Shards()
        self.memo_get: Shards[Decoded] = Shards()
        self.memo_post: Shards[Decoded] = Shards()
        self.now = 0
        self.mono = 0.0
        self.idle_deadline = 0.0
        self.date = b""
        self.refresh_clock()

    def set_issuers(self, issuers: IssuerMap) -> None:
        """Answer for a new set of issuers (responder/reload.py); what was decoded under the old
        set is forgotten, since a CertID may now map elsewhere."""
        self.issuers = issuers
        self.routes.clear()
        self.memo_get.clear()
        self.memo_post.clear()

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
        decoded = self.memo_get.of(target).get(target)
        if decoded is not None:
            return decoded, True
        der = decode_get_path(target, self.prefix)
        decoded, repeatable = (_UNDECODABLE, True) if der is None else self._plan(der)
        if repeatable:
            remember(self.memo_get, target, decoded, self.memo_shard_size)
        return decoded, repeatable

    def plan_post(self, body: bytes) -> tuple[Decoded, bool]:
        decoded = self.memo_post.of(body).get(body)
        if decoded is not None:
            return decoded, True
        decoded, repeatable = self._plan(body)
        if repeatable:
            remember(self.memo_post, body, decoded, self.memo_shard_size)
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


def remember(memo: Shards[_V], key: bytes, value: _V, shard_size: int) -> None:
    """Bounded, and only for short inputs. A full shard is emptied rather than trimmed: deleting
    the oldest key of a dict again and again makes `next(iter(d))` walk ever more deleted slots
    (measured: a flood of distinct requests fell to a tenth of the rate), and the hot entries
    come back on their next request."""
    if len(key) <= MEMO_MAX_INPUT:
        shard = memo.of(key)
        if len(shard) >= shard_size:
            shard.clear()
        shard[key] = value


NO_ROUTE: Route = (GET, MALFORMED_REQUEST, responses.CLOSE, False, None, accesslog.REFUSED_TAG)
