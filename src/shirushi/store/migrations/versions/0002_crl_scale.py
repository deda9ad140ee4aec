"""CRLs at scale: a partial, covering index over the revocations still owed a CRL entry.

The CRL service counts those entries on every revocation-driven CRL (to check its in-memory
entry set) and reads them all for scheduled CRLs; with the index both walk only the owed
entries' index rows instead of visiting each table row (measured: 30 ms against 460 ms for the
count at 100,000 entries on SQLite). Its leading columns match the older ix_certificates_revoked
so SQLite's planner prefers it for these queries.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

OWED = "revoked_at IS NOT NULL AND NOT crl_shown_after_expiry"


def upgrade() -> None:
    op.create_index(
        "ix_certificates_owed",
        "certificates",
        ["issuer_id", "revoked_at", "serial", "revocation_reason", "not_after"],
        sqlite_where=sa.text(OWED),
        postgresql_where=sa.text(OWED),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_owed", "certificates")
