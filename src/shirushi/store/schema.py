"""Tables of the system of record (SQLAlchemy Core). No I/O.

Serials are stored as lowercase hex without leading zeros (as in the cache keys) so that
PostgreSQL and SQLite compare them the same way; times are timezone-aware UTC.
The migrations in `migrations/versions` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# The newest migration (migrations/versions): a database at it needs no Alembic run. A new
# migration changes this too (tests/test_store.py checks it is Alembic's head).
REVISION = "0009"

UTCDateTime = sa.DateTime(timezone=True)

issuers = sa.Table(
    "issuers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # asn1.keys.issuer_id()
    sa.Column("name", sa.String(64), nullable=False, unique=True),  # "issuing-ca", "root"
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("certificate", sa.LargeBinary, nullable=False),  # DER
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Migration 0004: a CA registered with `issuer add` (no key here); the last CRL imported
    # from it (CRL numbers reach 20 octets, RFC 5280 5.2.3, hence Numeric).
    sa.Column("outside", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("crl_number", sa.Numeric(50, 0)),
    sa.Column("crl_this_update", UTCDateTime),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
    sa.Column("serial", sa.String(42), nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("dns_names", sa.Text, nullable=False),  # space separated
    sa.Column("not_before", UTCDateTime, nullable=False),
    sa.Column("not_after", UTCDateTime, nullable=False),
    sa.Column("spki_sha256", sa.String(64), nullable=False),
    # "server" (subscriber), "ocsp-signer" or "ca": bulk revocation (policy 5.8) and
    # key-compromise reports act on subscriber certificates only.
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Revocation (policy 4.9): empty while the certificate is good.
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("revocation_reason", sa.String(32)),
    # Goes up with every change of status; cached OCSP responses carry it (cache/records.py).
    sa.Column("status_version", sa.Integer, nullable=False, server_default="0"),
    # RFC 5280 3.3: set once a scheduled CRL issued after notAfter has listed the entry.
    sa.Column("crl_shown_after_expiry", sa.Boolean, nullable=False, default=False),
    # The CRL shard named in the certificate's CRL Distribution Point (migration 0003): chosen at
    # issuance, never changed; 0 is the issuer's full CRL (crl/shards.py).
    sa.Column("crl_shard", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
)
sa.Index("ix_certificates_spki", certificates.c.spki_sha256)
sa.Index("ix_certificates_not_after", certificates.c.not_after)
sa.Index("ix_certificates_revoked", certificates.c.issuer_id, certificates.c.revoked_at)
# The presigner's scan of one issuer in id order (migration 0009; Store.statuses).
sa.Index("ix_certificates_issuer", certificates.c.issuer_id, certificates.c.id)
# Revocations still owed a CRL entry (migrations 0002, 0003): a shard's CRL reads its entries by it.
OWED = "revoked_at IS NOT NULL AND NOT crl_shown_after_expiry"
sa.Index(
    "ix_certificates_owed",
    certificates.c.issuer_id,
    certificates.c.crl_shard,
    sqlite_where=sa.text(OWED),
    postgresql_where=sa.text(OWED),
)

crls = sa.Table(
    "crls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
    # Which CRL of the issuer (0: the full CRL, N: shard N; migration 0003).
    sa.Column("shard", sa.Integer, nullable=False, server_default="0"),
    # RFC 5280 5.2.3: strictly increasing per CRL scope (issuer and shard); the unique constraint
    # makes two backends racing for the same number fail instead of reusing it.
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("this_update", UTCDateTime, nullable=False),
    sa.Column("next_update", UTCDateTime),
    sa.Column("scheduled", sa.Boolean, nullable=False),
    sa.Column("entries", sa.Integer),
    sa.Column("sha256", sa.String(64)),
    sa.Column("published_at", UTCDateTime),
    sa.UniqueConstraint("issuer_id", "shard", "number", name="uq_crls_issuer_shard_number"),
)

# The CRL archive (policy 5.5.1; migration 0008, crl/archive.py): one row per archived CRL with
# its manifest (crl/archive_format.py) and the SHA-256 of its DER, committed before the CRL goes
# live; the chunks of entries the manifests share, stored once per scope, compressed, each with
# the latest nextUpdate of a CRL using it (retention, policy 5.5.2, drops it after the cutoff).
crl_archive = sa.Table(
    "crl_archive",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issuer_id", sa.String(32), sa.ForeignKey("issuers.id"), nullable=False),
    sa.Column("shard", sa.Integer, nullable=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("this_update", UTCDateTime, nullable=False),
    sa.Column("next_update", UTCDateTime, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),  # octets of the DER
    sa.Column("stored", sa.BigInteger, nullable=False),  # octets this CRL added to the archive
    sa.Column("manifest", sa.LargeBinary, nullable=False),  # zlib of the JSON manifest
    sa.Column("archived_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("issuer_id", "shard", "number", name="uq_crl_archive_scope_number"),
)
crl_archive_chunks = sa.Table(
    "crl_archive_chunks",
    metadata,
    sa.Column("issuer_id", sa.String(32), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("stored", sa.BigInteger, nullable=False),  # octets of `data`
    sa.Column("data", sa.LargeBinary, nullable=False),  # zlib of the entries' DER
    sa.Column("last_used", UTCDateTime, nullable=False),
)
sa.Index(
    "ix_crl_archive_chunks_last_used",
    crl_archive_chunks.c.issuer_id,
    crl_archive_chunks.c.shard,
    crl_archive_chunks.c.last_used,
)

# Work that must follow a committed change (re-sign an OCSP response, regenerate a CRL). Written
# in the same transaction as the change, done afterwards, retried until done (issue: revocation
# must reach OCSP and the CRL even if the process dies in between).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "ocsp" | "crl"
    sa.Column("issuer_id", sa.String(32), nullable=False),
    # The certificate concerned; on "crl" rows the revoked one (empty on rows written by 0.1.0),
    # which tells the CRL service which entries changed.
    sa.Column("serial", sa.String(42)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("done_at", UTCDateTime),
)
sa.Index("ix_outbox_pending", outbox.c.done_at)

# Keys that may never be certified again (BR 6.1.1.3, policy 4.9.12).
blocked_keys = sa.Table(
    "blocked_keys",
    metadata,
    sa.Column("spki_sha256", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("blocked_at", UTCDateTime, nullable=False),
)

# Append-only audit log (policy 5.4): every issuance, revocation and CRL. The migrations add
# triggers that refuse UPDATE and DELETE.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("issuer_id", sa.String(32)),
    sa.Column("serial", sa.String(42)),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
)

# Certificate problem reports (BR 4.9.3, 4.9.5; migration 0005): open until closed with the action
# taken, each with its 24 h investigation deadline. Receipt and closing are also in the audit log.
problem_reports = sa.Table(
    "problem_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("deadline", UTCDateTime, nullable=False),
    sa.Column("issuer_id", sa.String(32)),
    sa.Column("serial", sa.String(42), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("contact", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("client", sa.String(64), nullable=False),  # the reporter's address (rate limit, audit)
    sa.Column("closed_at", UTCDateTime),
    sa.Column("action", sa.String(16)),  # "revoked" | "rejected"
    sa.Column("note", sa.Text),
)
sa.Index("ix_problem_reports_open", problem_reports.c.closed_at, problem_reports.c.deadline)

# Key-compromise challenges (policy 4.9.12, third proof; migration 0005): random bytes bound to a
# public key, valid 1 h, used once. In the database so they survive restarts and work across
# processes.
key_challenges = sa.Table(
    "key_challenges",
    metadata,
    sa.Column("challenge", sa.String(128), primary_key=True),  # hex of the challenge bytes
    sa.Column("spki_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)
sa.Index("ix_key_challenges_expires", key_challenges.c.expires_at)

# Domain validations that succeeded (policy 3.2.7, BR 3.2.2.4): any door's issuance for `name`
# may rely on one until `reuse_until` (migration 0006). `wildcard` marks DNS-based methods,
# the only ones that may cover "*.name" (BR 3.2.2.4.19 excludes wildcards from http-01).
domain_validations = sa.Table(
    "domain_validations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),  # "3.2.2.4.7", "3.2.2.4.18", "3.2.2.4.19"
    sa.Column("wildcard", sa.Boolean, nullable=False),
    sa.Column("validated_at", UTCDateTime, nullable=False),
    sa.Column("reuse_until", UTCDateTime, nullable=False),
    sa.Column("account", sa.String(64)),  # the ACME account that proved it, if any
)
sa.Index("ix_domain_validations_name", domain_validations.c.name)

# ACME (RFC 8555) accounts, orders, authorizations and challenges as JSON documents; `owner`
# is the account an object belongs to, `parent` the order or authorization it hangs under.
acme_objects = sa.Table(
    "acme_objects",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # account | order | authz | challenge | cert
    sa.Column("owner", sa.String(64)),
    sa.Column("lookup", sa.String(128)),  # account: JWK thumbprint; cert: serial
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("ix_acme_objects_lookup", acme_objects.c.kind, acme_objects.c.lookup)
sa.Index("ix_acme_objects_owner", acme_objects.c.kind, acme_objects.c.owner, acme_objects.c.created_at)

# Replay nonces (RFC 8555 6.5): a nonce is good once; using it deletes its row.
acme_nonces = sa.Table(
    "acme_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)
