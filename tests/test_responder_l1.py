"""The in-process cache's rules and the prebuilt answers (pure parts, no server)."""

from __future__ import annotations

from shirushi.cache import records
from shirushi.responder.lookup import L1
from shirushi.responder.request import MALFORMED_REQUEST, TRY_LATER
from shirushi.responder.responses import KEEP, Answer, http_date, ocsp_error

NOW = 1_800_000_000


def answer(next_update: int = NOW + 3600, refresh_by: int = NOW + 1800) -> Answer:
    return Answer.of(records.make_record(b"\x30\x03\x0a\x01\x00", NOW - 60, next_update, refresh_by))


def test_l1_only_while_alive() -> None:
    l1 = L1(1 << 20, 60)
    l1.put(b"k", answer(), NOW, l1.generation)
    assert l1.get(b"k", NOW) is None  # not stored: no subscription yet
    l1.set_alive(True)
    l1.put(b"k", answer(), NOW, l1.generation)
    assert l1.get(b"k", NOW) is not None
    l1.set_alive(False)
    assert l1.get(b"k", NOW) is None and len(l1.entries) == 0


def test_l1_refuses_a_reply_that_raced_an_invalidation() -> None:
    l1 = L1(1 << 20, 60)
    l1.set_alive(True)
    generation = l1.generation  # GET sent
    l1.invalidate(b"other")  # any invalidation while it is in flight
    l1.put(b"k", answer(), NOW, generation)
    assert l1.get(b"k", NOW) is None
    generation = l1.generation
    l1.set_alive(True)  # a resubscription in between counts too
    l1.put(b"k", answer(), NOW, generation)
    assert l1.get(b"k", NOW) is None


def test_l1_invalidate_and_expiry() -> None:
    l1 = L1(1 << 20, 60)
    l1.set_alive(True)
    l1.put(b"k", answer(), NOW, l1.generation)
    l1.invalidate(b"k")
    assert l1.get(b"k", NOW) is None
    # Expiry: min(nextUpdate, refresh_by, now + a lifetime in [max_age / 2, max_age]).
    l1.put(b"a", answer(next_update=NOW + 10), NOW, l1.generation)
    l1.put(b"b", answer(refresh_by=NOW + 20), NOW, l1.generation)
    assert l1.get(b"a", NOW + 9) is not None and l1.get(b"a", NOW + 10) is None
    assert l1.get(b"b", NOW + 19) is not None and l1.get(b"b", NOW + 20) is None
    for i in range(200):
        l1.put(b"c%d" % i, answer(), NOW, l1.generation)
    lifetimes = {key: expires - NOW for key, (_, expires) in l1.entries.items() if key.startswith(b"c")}
    assert len(lifetimes) == 200 and all(30 <= t <= 60 for t in lifetimes.values())
    assert len(set(lifetimes.values())) > 10  # spread, not all due in the same second
    key, lifetime = next(iter(lifetimes.items()))
    assert l1.get(key, NOW + lifetime - 1) is not None and l1.get(key, NOW + lifetime) is None
    l1.put(b"d", answer(next_update=NOW), NOW, l1.generation)
    assert b"d" not in l1.entries


def test_l1_bounded_by_bytes() -> None:
    one = answer().size + len(b"k0")
    l1 = L1(3 * one + one // 2, 60)
    l1.set_alive(True)
    for i in range(10):
        l1.put(b"k%d" % i, answer(), NOW, l1.generation)
        assert l1.bytes <= l1.max_bytes
    kept = [key for key, _ in l1.entries.items()]  # which ones depends on the keys' hashes
    assert len(kept) == 3 and all(l1.get(key, NOW) is not None for key in kept)
    assert l1.bytes == sum(a.size + len(k) for k, (a, _) in l1.entries.items())
    # Replacing an entry counts it once; an invalidated or expired one gives its bytes back.
    l1.put(kept[0], answer(), NOW, l1.generation)
    assert l1.bytes == 3 * one
    l1.invalidate(kept[0])
    assert l1.bytes == 2 * one and l1.get(kept[0], NOW) is None
    assert l1.get(kept[1], NOW + 60) is None and l1.bytes == one
    l1.set_alive(False)
    assert l1.bytes == 0
    # An answer larger than the whole budget is not cached (and evicts nothing).
    small = L1(one - 1, 60)
    small.set_alive(True)
    small.put(b"k0", answer(), NOW, small.generation)
    assert len(small.entries) == 0 and small.bytes == 0


def test_l1_bytes_follow_the_der() -> None:
    big = Answer.of(records.make_record(b"\x30" + b"\x00" * 5000, NOW - 60, NOW + 3600, NOW + 1800))
    assert big.size - answer().size == 5001 - 5


def test_answer_renders_only_what_is_asked() -> None:
    a = answer()
    date = b"Date: " + http_date(NOW) + b"\r\n"
    assert a.post_keep(NOW, 3600, date) == a.post(date, KEEP)
    assert a._get_head == b""
    assert a.get_keep(NOW, 3600, date) == a.get(NOW, 3600, date, KEEP, False)
    later = b"Date: " + http_date(NOW + 1) + b"\r\n"
    assert a.get_keep(NOW + 1, 3600, later) == a.get(NOW + 1, 3600, later, KEEP, False)


def test_http_date_matches_the_library() -> None:
    import email.utils

    for seconds in (0, 951782400, 1_700_000_000, NOW, 4102444799, 253402300799):
        assert http_date(seconds) == email.utils.formatdate(seconds, usegmt=True).encode()


def test_answer_headers() -> None:
    a = answer()
    assert a.max_age(NOW, 3600) == 1800  # refresh_by first
    assert a.max_age(NOW, 600) == 600  # the cap
    assert a.max_age(NOW + 5000, 3600) == 0  # never negative
    date = b"Date: " + http_date(NOW) + b"\r\n"
    text = a.get(NOW, 3600, date, KEEP, False)
    assert text.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 5\r\n")
    assert b"Cache-Control: max-age=1800, public, no-transform, must-revalidate\r\n" in text
    assert b"Expires: " + http_date(NOW + 3600) + b"\r\n" in text
    assert b"Last-Modified: " + http_date(NOW - 60) + b"\r\n" in text
    assert text.endswith(b"\r\n\r\n\x30\x03\x0a\x01\x00")
    assert a.get_keep(NOW, 3600, date) == text
    assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 5.6.7's example


def test_if_none_match() -> None:
    a = answer()
    etag = a.etag.decode()
    for header in (etag, f'"x", {etag}', f"W/{etag}", "*", f" {etag} "):
        assert a.matches(header.encode()), header
    for header in ('"x"', etag[:-2] + '"', ""):
        assert not a.matches(header.encode()), header


def test_error_answers() -> None:
    date = b"Date: " + http_date(NOW) + b"\r\n"
    text = ocsp_error(TRY_LATER, date, KEEP)
    assert text.endswith(b"\r\n\r\n\x30\x03\x0a\x01\x03")
    assert b"Cache-Control: no-cache, no-store, must-revalidate\r\n" in text
    assert ocsp_error(MALFORMED_REQUEST, date, KEEP, head_only=True).endswith(b"\r\n\r\n")


def test_l1_evicts_from_other_shards_when_its_own_is_empty() -> None:
    """Over budget, a put evicts the newest entry of its key's shard, or of any shard when that
    one is empty: the bound holds whichever shards the keys fall in."""
    one = answer().size + len(b"k000")
    l1 = L1(20 * one, 60)
    l1.set_alive(True)
    for i in range(2000):
        l1.put(b"k%03x" % i, answer(), NOW, l1.generation)
        assert l1.bytes <= l1.max_bytes
    assert l1.bytes == sum(a.size + len(k) for k, (a, _) in l1.entries.items()) == 20 * one
    assert len(l1.entries) == 20 and b"k7cf" in l1.entries  # the last one put is always kept


def test_a_full_memo_shard_is_emptied_alone() -> None:
    from shirushi.responder.routing import remember
    from shirushi.responder.shards import SHARDS, Shards

    memo: Shards[int] = Shards()
    for i in range(SHARDS * 8):
        remember(memo, b"%d" % i, i, 4)
        assert all(len(m) <= 4 for m in memo.maps)
    assert SHARDS * 2 < len(memo) <= SHARDS * 4  # every shard holds some, none more than its share
    assert b"%d" % (SHARDS * 8 - 1) in memo
    remember(memo, b"x" * 513, 0, 4)  # longer than MEMO_MAX_INPUT: never remembered
    assert b"x" * 513 not in memo
