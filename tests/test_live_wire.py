"""The live-signing protocol, its budget and the asked-for list: pure parts, no process."""

from __future__ import annotations

import pytest

from shirushi.cache import livewire, records
from shirushi.presign.live import Asked, TokenBucket

ISSUER = "0123456789abcdef"


def test_request_and_reply_frames_round_trip() -> None:
    key = records.response_key(ISSUER, "sha256", 0xABC).encode()
    decoder = livewire.Decoder(livewire.MAX_REQUEST)
    wire = livewire.request(7, key) + livewire.request(8, key)
    # Split anywhere: frames come out whole, in order.
    payloads = [*decoder.feed(wire[:3]), *decoder.feed(wire[3:11]), *decoder.feed(wire[11:])]
    assert [livewire.parse_request(p) for p in payloads] == [(7, key), (8, key)]
    reply = livewire.Decoder(livewire.MAX_REPLY)
    (payload,) = reply.feed(livewire.reply(9, livewire.OK, b"record"))
    assert livewire.parse_reply(payload) == (9, livewire.OK, b"record")


def test_oversized_frames_and_unknown_statuses_are_refused() -> None:
    decoder = livewire.Decoder(livewire.MAX_REQUEST)
    with pytest.raises(livewire.ProtocolError):
        list(decoder.feed(livewire.frame(b"x" * (livewire.MAX_REQUEST + 1))))
    with pytest.raises(livewire.ProtocolError):
        livewire.parse_reply(b"\0\0\0\1\x09")
    with pytest.raises(livewire.ProtocolError):
        livewire.parse_request(b"\0\0")


def test_parse_key_accepts_only_what_response_key_writes() -> None:
    serial = (1 << 159) | 12345
    assert livewire.parse_key(records.response_key(ISSUER, "sha1", serial).encode()) == (ISSUER, "sha1", serial)
    prefix = records.PREFIX
    for bad in (
        f"{prefix}{{{ISSUER}:0}}:sha1",  # not positive
        f"{prefix}{{{ISSUER}:0abc}}:sha1",  # leading zero: another spelling of a key
        f"{prefix}{{{ISSUER}:" + "f" * 41 + "}:sha1",  # more than 20 octets (RFC 5280 4.1.2.2)
        f"{prefix}{{{ISSUER}:abc}}:md5",
        f"{prefix}{{{ISSUER}}}:complete",
        f"{prefix}{{{ISSUER.upper()}:abc}}:sha1",
        f"{prefix}{{{ISSUER}:ABC}}:sha1",
        f"other:{{{ISSUER}:abc}}:sha1",
        f"{prefix}{{{ISSUER}:abc}}:sha1\n",
        f"{prefix}{ISSUER}:sha1:abc",  # the layout before hash tags
    ):
        assert livewire.parse_key(bad.encode()) is None, bad


def test_token_bucket_spends_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 of a token
    assert bucket.take(100.5) is True
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]  # never above the burst


def test_asked_keeps_order_drops_repeats_and_is_bounded() -> None:
    asked = Asked(limit=3)
    for serial in (5, 3, 5, 9, 11):
        asked.add(serial)
    assert asked.take(2) == [5, 3]
    assert asked.take(10) == [9]
    assert asked.take(10) == []
