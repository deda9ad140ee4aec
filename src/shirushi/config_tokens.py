"""The `[[api.tokens]]` settings: named API tokens with roles. Pure except reading the
environment variable a token names (`token_env`).

A token written in the file is kept only as its SHA-256 from the moment the settings are built:
the text itself is not held in memory, shown in `repr()` or logged. A token named by `token_env`
is read (and hashed) when the API starts, so a missing variable stops `serve` with its name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from shirushi.config_values import secret
from shirushi.errors import ConfigError

ROLES = ("issue", "revoke", "read")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclasses.dataclass(frozen=True)
class APITokenSettings:
    name: str = ""
    token: str = dataclasses.field(default="", repr=False)
    token_env: str = ""
    roles: tuple[str, ...] = ()
    # The SHA-256 of `token` (which is emptied once hashed).
    token_sha256: bytes = dataclasses.field(default=b"", repr=False, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.token:
            object.__setattr__(self, "token_sha256", token_digest(self.token))
            object.__setattr__(self, "token", "")

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"api.tokens: name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                "(it goes to the audit log)"
            )
        where = f"api.tokens {self.name!r}"
        if bool(self.token_sha256) == bool(self.token_env):
            raise ConfigError(f"{where}: give exactly one of token or token_env")
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown or not self.roles:
            raise ConfigError(f"{where}: roles {list(self.roles)!r} must list one or more of {', '.join(ROLES)}")

    def digest(self) -> bytes:
        """The token's SHA-256 (read from `token_env` if named there)."""
        if self.token_sha256:
            return self.token_sha256
        value = secret("", self.token_env, f"api.tokens {self.name!r} token_env")
        if not value:
            raise ConfigError(f"api.tokens {self.name!r}: environment variable {self.token_env} is empty")
        return token_digest(value)


def check_tokens(tokens: tuple[APITokenSettings, ...]) -> None:
    names = [t.name for t in tokens]
    for token in tokens:
        token.validate()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"api.tokens: names must be unique; repeated: {', '.join(duplicates)}")
