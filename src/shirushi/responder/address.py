"""Where the responder's Redis client connects: an `Address` (from redis.url, or a node found
through Sentinel) and the `Locator` a `resp.Link` asks on each (re)connect. Pure, but for
`Address.open`, which opens the connection.

`Fixed` is the locator of redis.mode = "single"; `responder/sentinel.py` has Sentinel's.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from shirushi.errors import ConfigError
from shirushi.responder.respwire import Reply, command

if TYPE_CHECKING:
    from shirushi.responder.resp import Link


def redact(url: str) -> str:
    """The URL without its password (user:password@ and ?password=), for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(q for q in parts.query.split("&") if not q.startswith("password="))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Address:
    """Where and how to reach Redis, from a redis.url (unix://, redis://, rediss://)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        self.path: str | None = None
        self.host = ""
        self.port = 6379
        self.ssl: ssl.SSLContext | None = None
        db_text = query.get("db", ["0"])[0]
        if parts.scheme == "unix":
            self.path = parts.path
        elif parts.scheme in ("redis", "rediss"):
            self.host = parts.hostname or "localhost"
            try:
                self.port = parts.port or 6379
            except ValueError:
                raise ConfigError(f"redis.url {redact(url)!r} has a bad port") from None
            if parts.path.strip("/"):
                db_text = parts.path.strip("/")
            if parts.scheme == "rediss":
                self.ssl = ssl.create_default_context()
        else:
            raise ConfigError(f"redis.url {redact(url)!r}: scheme must be unix, redis or rediss")
        if not db_text.isdigit():
            raise ConfigError(f"redis.url {redact(url)!r}: database must be a number")
        self.db = int(db_text)
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        password = parts.password or query.get("password", [None])[0]
        self.password = urllib.parse.unquote(password) if password else None
        # The role the server must report (b"master" / b"slave"), for addresses found through
        # Sentinel; None for a configured server, which is what the operator said it is.
        self.role: bytes | None = None

    def at(self, host: str, port: int, role: bytes) -> Address:
        """This address's credentials, database and TLS at another node, with the role it must have."""
        other = copy.copy(self)
        other.path, other.host, other.port, other.role = None, host, port, role
        return other

    @property
    def where(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"

    def same_node(self, other: Address | None) -> bool:
        return other is not None and (self.path, self.host, self.port) == (other.path, other.host, other.port)

    def handshake(self, select_db: bool = True) -> list[bytes]:
        """AUTH and SELECT commands to send first on a new connection."""
        out = []
        if self.password is not None:
            user = (self.username or "default").encode()
            out.append(command(b"AUTH", user, self.password.encode()))
        if select_db and self.db:
            out.append(command(b"SELECT", str(self.db).encode()))
        return out

    def role_ok(self, value: Reply) -> bool:
        """Whether a ROLE reply matches `role`; a replica must also be connected to its primary
        (one cut off keeps serving what it had, which may predate a revocation)."""
        if not isinstance(value, list) or not value or value[0] != self.role:
            return False
        return self.role != b"slave" or (len(value) > 3 and value[3] == b"connected")

    async def open(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol]) -> None:
        if self.path is not None:
            await loop.create_unix_connection(factory, self.path)
        else:
            await loop.create_connection(factory, self.host, self.port, ssl=self.ssl)


class Locator(Protocol):
    """Where a Link connects: asked on every (re)connect, told when an address failed."""

    async def locate(self) -> Address: ...

    def lost(self, address: Address) -> None: ...

    def follow(self, link: Link) -> None: ...

    def start(self) -> None: ...

    def check(self, now: float) -> None: ...

    def close(self) -> None: ...


class Fixed:
    """One configured server (redis.mode = "single")."""

    def __init__(self, address: Address) -> None:
        self.address = address

    async def locate(self) -> Address:
        return self.address

    def lost(self, address: Address) -> None:
        pass

    def follow(self, link: Link) -> None:
        pass

    def start(self) -> None:
        pass

    def check(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass
