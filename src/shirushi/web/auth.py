"""Who may call the RA/admin API: bearer tokens, their names and roles. Pure.

Tokens are held only as SHA-256 digests. A presented token is hashed and compared with every
known digest in constant time (`hmac.compare_digest`, no early exit), so neither the timing nor
the order of the table tells which token came close. `api.token` is the token named
"api.token" with every role; `[[api.tokens]]` add named tokens with chosen roles.
"""

from __future__ import annotations

import dataclasses
import hmac

from shirushi.config import APISettings
from shirushi.config_tokens import ROLES, token_digest

# The name the single `api.token` goes by in the audit log.
SINGLE_TOKEN = "api.token"


@dataclasses.dataclass(frozen=True)
class Caller:
    """A caller holding a valid token: its name (for the audit log) and its roles."""

    name: str
    roles: frozenset[str]


@dataclasses.dataclass(frozen=True)
class _Entry:
    digest: bytes
    caller: Caller


class TokenTable:
    def __init__(self, entries: list[tuple[bytes, Caller]]) -> None:
        self._entries = [_Entry(d, c) for d, c in entries]

    @classmethod
    def from_settings(cls, api: APISettings) -> TokenTable:
        """The tokens `api` configures (reads the environment variables they name)."""
        entries: list[tuple[bytes, Caller]] = []
        single = api.bearer_token()
        if single:
            entries.append((token_digest(single), Caller(SINGLE_TOKEN, frozenset(ROLES))))
        for token in api.tokens:
            entries.append((token.digest(), Caller(token.name, frozenset(token.roles))))
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def caller(self, authorization: str) -> Caller | None:
        """The caller an `Authorization` header value names, or None."""
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        digest = token_digest(value)
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry.caller
        return found
