"""Outside CAs: issuer rows for CAs whose key Shirushi does not hold (`issuer add`).

- issuers.outside: true for a CA registered with `issuer add`; Shirushi serves its certificates'
  status (imported from its index, certificates or CRL) and never signs for it.
- issuers.crl_number / issuers.crl_this_update: the last CRL imported from that CA, so that an
  older CRL is refused (RFC 5280 5.2.3: numbers increase; a CRL without a number, as easy-rsa's
  `gen-crl` writes, is ordered by thisUpdate).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("issuers") as batch:
        batch.add_column(sa.Column("outside", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("crl_number", sa.Numeric(50, 0)))
        batch.add_column(sa.Column("crl_this_update", UTC))


def downgrade() -> None:
    with op.batch_alter_table("issuers") as batch:
        batch.drop_column("crl_this_update")
        batch.drop_column("crl_number")
        batch.drop_column("outside")
