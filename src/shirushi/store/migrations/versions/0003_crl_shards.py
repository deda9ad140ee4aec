"""Partitioned CRLs: each certificate's CRL shard, and CRL numbers per shard.

- certificates.crl_shard: the shard whose CRL the certificate's CRL Distribution Point names,
  chosen at issuance and never changed (0: the issuer's full CRL, as for every certificate
  issued before this revision or with `crl.shards = 1`).
- crls.shard: which CRL of the issuer a number belongs to; numbers increase per (issuer, shard)
  (RFC 5280 5.2.3: per scope), so the unique constraint moves to (issuer, shard, number).
- ix_certificates_owed gains crl_shard right after issuer_id: a shard's CRL reads its own
  entries by the index alone.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

OWED = "revoked_at IS NOT NULL AND NOT crl_shown_after_expiry"


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("crl_shard", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("crls") as batch:
        batch.add_column(sa.Column("shard", sa.Integer, nullable=False, server_default="0"))
        batch.drop_constraint("uq_crls_issuer_number", type_="unique")
        batch.create_unique_constraint("uq_crls_issuer_shard_number", ["issuer_id", "shard", "number"])
    op.drop_index("ix_certificates_owed", "certificates")
    op.create_index(
        "ix_certificates_owed",
        "certificates",
        ["issuer_id", "crl_shard", "revoked_at", "serial", "revocation_reason", "not_after"],
        sqlite_where=sa.text(OWED),
        postgresql_where=sa.text(OWED),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_owed", "certificates")
    op.create_index(
        "ix_certificates_owed",
        "certificates",
        ["issuer_id", "revoked_at", "serial", "revocation_reason", "not_after"],
        sqlite_where=sa.text(OWED),
        postgresql_where=sa.text(OWED),
    )
    with op.batch_alter_table("crls") as batch:
        batch.drop_constraint("uq_crls_issuer_shard_number", type_="unique")
        batch.create_unique_constraint("uq_crls_issuer_number", ["issuer_id", "number"])
        batch.drop_column("shard")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("crl_shard")
