"""Revocation at scale: an index on serials, and one over the revocations owed a CRL entry.

- ix_certificates_serial: revocation and the API look certificates up by serial alone (the
  unique index leads with issuer_id), which scanned the table: 56 ms at 100,000 rows.
- ix_certificates_owed: partial and covering, over the revocations still owed a CRL entry;
  scheduled CRLs read them all by it without visiting table rows. Its leading columns match the
  older ix_certificates_revoked so SQLite's planner prefers it for that query.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

OWED = "revoked_at IS NOT NULL AND NOT crl_shown_after_expiry"


def upgrade() -> None:
    op.create_index("ix_certificates_serial", "certificates", ["serial"])
    op.create_index(
        "ix_certificates_owed",
        "certificates",
        ["issuer_id", "revoked_at", "serial", "revocation_reason", "not_after"],
        sqlite_where=sa.text(OWED),
        postgresql_where=sa.text(OWED),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_owed", "certificates")
    op.drop_index("ix_certificates_serial", "certificates")
