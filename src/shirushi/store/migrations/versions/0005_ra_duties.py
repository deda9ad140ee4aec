"""The RA's duties: certificate problem reports (BR 4.9.3, 4.9.5) and key-compromise challenges
(policy 4.9.12).

- problem_reports: each report with its 24 h investigation deadline and, once closed, the
  action taken; the audit log records the report and its closing too (policy 5.4).
- key_challenges: random challenges bound to a public key, valid 1 h and used once; in the
  database so that they survive a restart and work across processes.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "problem_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("deadline", UTC, nullable=False),
        sa.Column("issuer_id", sa.String(32)),
        sa.Column("serial", sa.String(42), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("closed_at", UTC),
        sa.Column("action", sa.String(16)),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_problem_reports_open", "problem_reports", ["closed_at", "deadline"])
    op.create_table(
        "key_challenges",
        sa.Column("challenge", sa.String(128), primary_key=True),
        sa.Column("spki_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("used_at", UTC),
    )
    op.create_index("ix_key_challenges_expires", "key_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_key_challenges_expires", "key_challenges")
    op.drop_table("key_challenges")
    op.drop_index("ix_problem_reports_open", "problem_reports")
    op.drop_table("problem_reports")
