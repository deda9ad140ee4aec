"""PKCS#11 keys: the signer and the keystore (generate, open, find by label) over the session pool.

Does I/O (the token). Objects on the token: see the package docstring.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from shirushi.asn1.keys import key_identifier
from shirushi.config import PKCS11Settings
from shirushi.errors import ConflictError, SignerError
from shirushi.metrics.registry import count_signatures
from shirushi.signing import ECDSA_P256, KEY_TYPES, RSA_2048, PublicKey, verify
from shirushi.signing.pkcs11.sessions import (
    Session,
    TokenSessions,
    drop_sessions,
    find_objects,
    private_key,
    public_of,
    sessions_for,
)

T = TypeVar("T")


# --- public classes ------------------------------------------------------------------------


class PKCS11Signer:
    """Signs with one private key on a token (CKM_SHA256_RSA_PKCS, or CKM_ECDSA for P-256); holds no handles.

    Safe to share between threads and to carry into a forked child: every call borrows a
    session from this process's pool.
    """

    def __init__(self, settings: PKCS11Settings, name: str, public: PublicKey) -> None:
        self._settings = settings
        self._name = name
        self._public = public
        self._key_id = key_identifier(public)
        self._counter = count_signatures(name)

    @property
    def label(self) -> str:
        """RFC 7512 PKCS#11 URI of the private key, for messages and audit records."""

        def q(text: str) -> str:
            return urllib.parse.quote(text, safe="")

        return f"pkcs11:token={q(self._settings.token_label)};object={q(self._name)};type=private"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        """CKA_ID of the key pair (RFC 5280 4.2.1.2 method (1) key identifier)."""
        return self._key_id

    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, tbs: bytes) -> bytes:
        """The signature over SHA-256(tbs) (Signer.sign), made inside the token. Blocks."""
        signature = sessions_for(self._settings).sign(self._name, tbs)
        # A CA must never publish a signature that does not verify (a token fault, a handle
        # that names another key); checking costs about 30 us next to a signature's ~1 ms.
        try:
            verify(self._public, signature, tbs)
        except (InvalidSignature, ValueError):
            raise SignerError(
                f"{self.label}: the token returned a signature that does not verify with the key's public key"
            ) from None
        self._counter.inc()
        return signature

    async def sign_async(self, tbs: bytes) -> bytes:
        """`sign` in a worker thread, so that an event loop never waits on the token."""
        return await asyncio.to_thread(self.sign, tbs)

    def __repr__(self) -> str:
        return f"PKCS11Signer({self.label!r})"


class PKCS11KeyStore:
    """The CA's keys on the PKCS#11 token named by `settings` (KeyStore protocol).

    Nothing is loaded until the first call; each process then loads the module, logs in
    once and keeps a session pool (see the module docstring).
    """

    def __init__(self, settings: PKCS11Settings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"PKCS11KeyStore(module={self.settings.module!r}, token_label={self.settings.token_label!r})"

    def _sessions(self) -> TokenSessions:
        return sessions_for(self.settings)

    def exists(self, name: str) -> bool:
        """True when a private key labelled `name` is on the token."""

        def op(s: Session) -> bool:
            return bool(find_objects(s.session, name, ObjectClass.PRIVATE_KEY))

        return self._sessions().run(f"looking up key {name!r}", op)

    def generate(self, name: str, key_type: str = RSA_2048) -> PKCS11Signer:
        """Generate a key pair of `key_type` inside the token; ConflictError if `name` is taken."""
        if key_type not in KEY_TYPES:
            raise SignerError(f"key type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
        sessions = self._sessions()
        token = self.settings.token_label

        def op(s: Session) -> PublicKey:
            session = s.session
            taken = find_objects(session, name, ObjectClass.PRIVATE_KEY) or find_objects(
                session, name, ObjectClass.PUBLIC_KEY
            )
            if taken:
                raise ConflictError(
                    f"a key labelled {name!r} exists already on PKCS#11 token {token!r}; refusing to overwrite it"
                )
            if key_type == ECDSA_P256:
                curve = {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}
                make = session.create_domain_parameters(KeyType.EC, curve, local=True).generate_keypair
            else:
                make = functools.partial(session.generate_keypair, KeyType.RSA, 2048)
            public, private = make(
                label=name,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: False,
                    Attribute.WRAP: False,
                },
                private_template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.SIGN_RECOVER: False,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                },
            )
            pub = public_of(session, private)
            # CKA_ID can only be computed once the public key exists, so it is set afterwards.
            key_id = key_identifier(pub)
            private[Attribute.ID] = key_id
            public[Attribute.ID] = key_id
            # PKCS#11 has no "create unless the label exists". Threads of this process are
            # serialised by `generating`; for another process that created the label while
            # this one generated, whoever sees two keys removes its own and refuses. SoftHSM2
            # may show another process's new object only later, so that check is best effort:
            # callers must not run two `init`s at once.
            if len(find_objects(session, name, ObjectClass.PRIVATE_KEY)) > 1:
                private.destroy()
                public.destroy()
                raise ConflictError(f"another process created key {name!r} on PKCS#11 token {token!r} at the same time")
            return pub

        with sessions.generating:
            public = sessions.run(f"generating key {name!r}", op, rw=True)
        return PKCS11Signer(self.settings, name, public)

    def open(self, name: str) -> PKCS11Signer:
        """Open the existing key `name` (StateError when it is missing)."""

        def op(s: Session) -> PublicKey:
            key = s.keys[name] = private_key(s.session, name, self.settings.token_label)
            if not key[Attribute.SIGN]:
                raise SignerError(f"the key labelled {name!r} is not allowed to sign (CKA_SIGN false)")
            return public_of(s.session, key)

        public = self._sessions().run(f"opening key {name!r}", op)
        return PKCS11Signer(self.settings, name, public)

    def close(self) -> None:
        """Log out and close this process's sessions on the token; later calls reconnect."""
        pool = drop_sessions(self.settings)
        if pool is not None:
            pool.close()
