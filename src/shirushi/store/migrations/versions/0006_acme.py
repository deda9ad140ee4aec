"""Domain validation records and the ACME server's objects and nonces.

- domain_validations: each successful BR 3.2.2.4 validation, reusable until reuse_until;
- acme_objects: accounts, orders, authorizations, challenges (JSON documents);
- acme_nonces: replay nonces, deleted when used.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "domain_validations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("wildcard", sa.Boolean, nullable=False),
        sa.Column("validated_at", UTC, nullable=False),
        sa.Column("reuse_until", UTC, nullable=False),
        sa.Column("account", sa.String(64)),
    )
    op.create_index("ix_domain_validations_name", "domain_validations", ["name"])
    op.create_table(
        "acme_objects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("lookup", sa.String(128)),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_index("ix_acme_objects_lookup", "acme_objects", ["kind", "lookup"])
    op.create_index("ix_acme_objects_owner", "acme_objects", ["kind", "owner", "created_at"])
    op.create_table(
        "acme_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acme_nonces")
    op.drop_index("ix_acme_objects_owner", "acme_objects")
    op.drop_index("ix_acme_objects_lookup", "acme_objects")
    op.drop_table("acme_objects")
    op.drop_index("ix_domain_validations_name", "domain_validations")
    op.drop_table("domain_validations")
