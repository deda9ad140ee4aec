"""The content-addressed CRL archive (policy 5.5; crl/archive.py).

- crl_archive: one row per archived CRL (issuer, shard, number, thisUpdate, nextUpdate, the
  SHA-256 of its DER) with its manifest;
- crl_archive_chunks: the chunks of revoked entries the manifests share, once per scope,
  compressed, with the latest nextUpdate of a CRL using each (what retention prunes by).

CRLs archived before this revision (files `archive/crl/NAME/NUMBER.crl`) are imported into the
new archive by the CRL service, which knows the data directory, the first time it touches
their scope (`CrlArchive.import_legacy`).

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crl_archive",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("this_update", UTC, nullable=False),
        sa.Column("next_update", UTC, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stored", sa.BigInteger, nullable=False),
        sa.Column("manifest", sa.LargeBinary, nullable=False),
        sa.Column("archived_at", UTC, nullable=False),
        sa.UniqueConstraint("issuer_id", "shard", "number", name="uq_crl_archive_scope_number"),
    )
    op.create_table(
        "crl_archive_chunks",
        sa.Column("issuer_id", sa.String(32), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("stored", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("last_used", UTC, nullable=False),
    )
    op.create_index("ix_crl_archive_chunks_last_used", "crl_archive_chunks", ["issuer_id", "shard", "last_used"])


def downgrade() -> None:
    op.drop_index("ix_crl_archive_chunks_last_used", "crl_archive_chunks")
    op.drop_table("crl_archive_chunks")
    op.drop_table("crl_archive")
