"""Key-compromise challenges (policy 4.9.12) in the system of record. Does database I/O.

A challenge is bound to one public key (its SPKI SHA-256), valid until `expires_at` and used
at most once. Kept in the database, not in memory, so a challenge handed out before a restart
or by another process is still honoured. Using one is a single conditional UPDATE, so two
reports racing with the same challenge cannot both succeed.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shirushi.store import schema
from shirushi.store.records import utc

# Challenges used or expired this long ago are deleted when new ones are made.
KEEP = dt.timedelta(days=1)


class KeyChallenges:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, challenge: bytes, spki_sha256: str, *, at: dt.datetime, expires_at: dt.datetime) -> None:
        t = schema.key_challenges
        with self.engine.begin() as conn:
            # Housekeeping first: the table holds about an hour's worth of challenges.
            conn.execute(t.delete().where(t.c.expires_at < utc(at - KEEP)))
            conn.execute(
                t.insert().values(
                    challenge=challenge.hex(), spki_sha256=spki_sha256, created_at=utc(at), expires_at=utc(expires_at)
                )
            )

    def usable(self, challenge: bytes, spki_sha256: str, at: dt.datetime) -> bool:
        """True if the challenge was made for this key, is unexpired at `at` and unused."""
        t = schema.key_challenges
        query = sa.select(t.c.challenge).where(*self._usable(challenge, spki_sha256, at))
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def use(self, challenge: bytes, spki_sha256: str, at: dt.datetime) -> bool:
        """Mark the challenge used; False if it was not usable (another report used it first)."""
        t = schema.key_challenges
        with self.engine.begin() as conn:
            result = conn.execute(t.update().where(*self._usable(challenge, spki_sha256, at)).values(used_at=utc(at)))
        return result.rowcount == 1

    @staticmethod
    def _usable(challenge: bytes, spki_sha256: str, at: dt.datetime) -> list[sa.ColumnElement[bool]]:
        t = schema.key_challenges
        return [
            t.c.challenge == challenge.hex(),
            t.c.spki_sha256 == spki_sha256,
            t.c.expires_at > utc(at),
            t.c.used_at.is_(None),
        ]
