"""A small authoritative DNS server on loopback (dnslib), with records the tests change.

UDP and TCP on one free port. `records[(name, TYPE)]` is a list of dnslib RDATA; names in
`servfail` answer SERVFAIL, names in `silent` are never answered (a timeout); lines
"NAME VALUE" in `txt_file` are TXT records too (written by other processes). A name with no
record at or below it answers NXDOMAIN, NOERROR/empty otherwise.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dnslib import AAAA, CAA, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.lock = threading.Lock()
        # Lines "NAME VALUE" appended by other processes (certbot's manual hooks): TXT records.
        self.txt_file: Path | None = None

    # -- changing records ---------------------------------------------------------------
    def set(self, name: str, rtype: str, *rdata: Any) -> None:
        with self.lock:
            if rdata:
                self.records[(_key(name), rtype)] = list(rdata)
            else:
                self.records.pop((_key(name), rtype), None)

    def a(self, name: str, address: str = "127.0.0.1") -> None:
        self.set(name, "A", A(address))

    def txt(self, name: str, *values: str) -> None:
        self.set(name, "TXT", *[TXT(v) for v in values])

    def caa(self, name: str, *entries: tuple[int, str, str]) -> None:
        self.set(name, "CAA", *[CAA(flags, tag, value) for flags, tag, value in entries])

    # -- answering ----------------------------------------------------------------------
    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord | None:
        reply = request.reply()
        qname = _key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        if qname in self.silent:
            return None
        if qname in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        with self.lock:
            found = list(self.records.get((qname, qtype), []))
            if qtype == "TXT" and self.txt_file is not None and self.txt_file.exists():
                for line in self.txt_file.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if _key(name) == qname and value:
                        found.append(TXT(value))
            exists = any(n == qname or n.endswith("." + qname) for n, _t in self.records)
        for rdata in found:
            reply.add_answer(RR(request.q.qname, QTYPE.reverse[qtype], rdata=rdata, ttl=0))
        if not found and not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Silent(DNSServer):  # type: ignore[misc]
    pass


@contextmanager
def dns_server() -> Iterator[tuple[Zone, str]]:
    """Start the server; yields the zone and its "127.0.0.1:PORT"."""
    zone = Zone()
    for _attempt in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            udp = DNSServer(zone, port=port, address="127.0.0.1", logger=_Quiet())
        except OSError:
            continue
        try:
            tcp = DNSServer(zone, port=port, address="127.0.0.1", tcp=True, logger=_Quiet())
        except OSError:
            # The UDP port was free but its TCP twin is taken: close the UDP socket and try again.
            udp.server.server_close()
            continue
        break
    else:
        raise RuntimeError("no free port for the test DNS server")
    udp.start_thread()
    tcp.start_thread()
    try:
        yield zone, f"127.0.0.1:{port}"
    finally:
        udp.stop()
        tcp.stop()
        udp.server.server_close()
        tcp.server.server_close()


class _Quiet:
    """dnslib's logger interface, logging nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


__all__ = ["AAAA", "Zone", "dns_server"]
