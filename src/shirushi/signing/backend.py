"""Chooses the key backend named by `ca.key_backend`. No I/O of its own.

"file" keeps PKCS#8 files under `data_dir/keys` (demos and tests); "pkcs11" keeps the keys in
an HSM (policy 6.1.1, 6.2.1). python-pkcs11 is imported only for "pkcs11", so processes on the
file backend never load it.
"""

from __future__ import annotations

from shirushi.config import Settings
from shirushi.errors import ConfigError
from shirushi.signing import KeyStore
from shirushi.signing.software import FileKeyStore


def keystore(settings: Settings) -> KeyStore:
    """The KeyStore for `settings.ca.key_backend`."""
    backend = settings.ca.key_backend
    if backend == "file":
        return FileKeyStore(settings.layout.keys, settings.ca.passphrase())
    if backend == "pkcs11":
        from shirushi.signing.pkcs11 import PKCS11KeyStore

        return PKCS11KeyStore(settings.pkcs11)
    raise ConfigError(f"ca.key_backend must be 'file' or 'pkcs11', not {backend!r}")
