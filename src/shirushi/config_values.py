"""Setting values: durations, listen addresses, secrets, and TOML/environment values coerced to
the types the settings dataclasses declare.

Pure except `secret()`, which reads the environment variable a setting names.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

from shirushi.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECONDS = 20 * 366 * 86400
# Values never echoed in messages.
SECRET_KEYS = frozenset({"pkcs11.user_pin", "api.token", "api.tokens.token"})


def parse_duration(text: str) -> dt.timedelta:
    """Parse "90s", "15m", "24h" or "7d" into a timedelta."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like '90s', '15m', '24h' or '7d'")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r}: a duration must be at most 20 years")
    return dt.timedelta(seconds=seconds)


def parse_listen(text: str) -> tuple[str, int]:
    """Parse "host:port" (IPv6 as "[::1]:port") into (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{text!r} is not host:port")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return host.strip("[]"), number


def secret(value: str, env_name: str, what: str) -> str:
    """A secret given inline or through an environment variable named in the config."""
    if env_name:
        if env_name not in os.environ:
            raise ConfigError(f"{what}: environment variable {env_name} is not set")
        return os.environ[env_name]
    return value


def coerce(value: Any, typ: Any, where: str) -> Any:
    """`value` from TOML or the environment as `typ`; ConfigError naming `where` otherwise."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif typ is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str and isinstance(value, str):
        return value
    elif typ is dt.timedelta and isinstance(value, str):
        # Written as a string ("24h"); the message names the value, not the key, as it always has.
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    elif typ == tuple[str, ...]:
        # A TOML array of strings, or "a, b" from the environment.
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return tuple(i.strip() for i in items if i.strip())
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    # A duration is written as a string.
    name = "str" if typ is dt.timedelta else getattr(typ, "__name__", str(typ))
    shown = f"a {type(value).__name__}" if where in SECRET_KEYS else repr(value)
    raise ConfigError(f"{where}: expected {name}, got {shown}")
