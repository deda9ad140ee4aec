"""Initial schema: issuers, certificates, CRLs, outbox, blocked keys, audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "issuers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("certificate", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
        sa.Column("serial", sa.String(42), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("dns_names", sa.Text, nullable=False),
        sa.Column("not_before", UTC, nullable=False),
        sa.Column("not_after", UTC, nullable=False),
        sa.Column("spki_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC),
        sa.Column("revocation_reason", sa.String(32)),
        sa.Column("status_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("crl_shown_after_expiry", sa.Boolean, nullable=False),
        sa.UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
    )
    op.create_index("ix_certificates_spki", "certificates", ["spki_sha256"])
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])
    op.create_index("ix_certificates_revoked", "certificates", ["issuer_id", "revoked_at"])
    op.create_table(
        "crls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("this_update", UTC, nullable=False),
        sa.Column("next_update", UTC),
        sa.Column("scheduled", sa.Boolean, nullable=False),
        sa.Column("entries", sa.Integer),
        sa.Column("sha256", sa.String(64)),
        sa.Column("published_at", UTC),
        sa.UniqueConstraint("issuer_id", "number", name="uq_crls_issuer_number"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("issuer_id", sa.String(32), nullable=False),
        sa.Column("serial", sa.String(42)),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("done_at", UTC),
    )
    op.create_index("ix_outbox_pending", "outbox", ["done_at"])
    op.create_table(
        "blocked_keys",
        sa.Column("spki_sha256", sa.String(64), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("blocked_at", UTC, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTC, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("issuer_id", sa.String(32)),
        sa.Column("serial", sa.String(42)),
        sa.Column("detail", sa.Text, nullable=False),
    )
    # Policy 5.4: the audit log is append-only, enforced by the database itself.
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
