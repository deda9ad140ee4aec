"""The system of record: certificates, revocations, CRL numbers, outbox and audit (SQLAlchemy Core)."""

from shirushi.store.records import CertificateRecord
from shirushi.store.store import Store

__all__ = ["CertificateRecord", "Store"]
