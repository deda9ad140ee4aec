"""The system of record: certificates, revocations, CRL numbers, outbox and audit (SQLAlchemy Core)."""

from shirushi.store.store import CertificateRecord, Store

__all__ = ["CertificateRecord", "Store"]
