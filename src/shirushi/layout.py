"""Where everything lives in the data directory: the one place that names the paths under data_dir.

Pure: it only builds paths and touches no file. The keyless responder imports it too, so it
imports nothing of the CA. Outside tools rely on `shirushi.db` and `redis.sock` staying put.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Layout:
    """The paths under one data directory (`root`)."""

    root: Path

    @property
    def database(self) -> Path:
        """The SQLite database (used when database.url is empty)."""
        return self.root / "shirushi.db"

    @property
    def keys(self) -> Path:
        """PKCS#8 key files of the "file" key backend."""
        return self.root / "keys"

    @property
    def certs(self) -> Path:
        """The CA certificates (public material only)."""
        return self.root / "certs"

    @property
    def issuers_bundle(self) -> Path:
        """Issuing CA certificates served by the responder (`ocsp.issuers` default)."""
        return self.certs / "issuers.pem"

    @property
    def outside(self) -> Path:
        """Certificates of outside CAs (`issuer add`) and of their delegated OCSP signers."""
        return self.certs / "outside"

    def outside_ca(self, name: str) -> Path:
        return self.outside / f"{name}.pem"

    def outside_signer(self, name: str) -> Path:
        return self.outside / f"{name}-ocsp.pem"

    @property
    def repository(self) -> Path:
        """Files the repository serves (CRLs)."""
        return self.root / "repository"

    def crl_archive(self, issuer_name: str) -> Path:
        """Where earlier versions archived this CRL scope's CRLs as `NUMBER.crl` files; the
        archive is in the database now (crl/archive.py), which moves these in on first use."""
        return self.root / "archive" / "crl" / issuer_name

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded redis-server (used when redis.url is empty)."""
        return self.root / "redis.sock"

    @property
    def live_socket(self) -> Path:
        """Unix socket of the backend's live-signing service (`ocsp.live_socket` default)."""
        return self.root / "live.sock"

    @property
    def control_socket(self) -> Path:
        """Unix socket on which a running `serve` takes `issue` and `revoke` from the CLI."""
        return self.root / "control.sock"

    @property
    def redis_dir(self) -> Path:
        """Working directory (and log) of the embedded redis-server."""
        return self.root / "redis"

    @property
    def serve_lock(self) -> Path:
        return self.root / "serve.lock"

    @property
    def demo_lock(self) -> Path:
        return self.root / "demo.lock"

    @property
    def demo(self) -> Path:
        """The sample certificate, key and checks `shirushi demo` writes."""
        return self.root / "demo"
