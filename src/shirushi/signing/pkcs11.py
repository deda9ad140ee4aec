"""PKCS#11 key backend: the CA's RSA keys are generated in and never leave a token.

Policy 6.1.1 and 6.2.1 require the CA keys to live in an HSM; this module reaches one through
its PKCS#11 module (SoftHSM2 in tests and demos). It does I/O: it loads the module, talks to
the token and keeps sessions open.

Objects on the token
    A key named `name` is an RSA pair with CKA_LABEL = name on both halves and CKA_ID =
    SHA-1 of the DER RSAPublicKey (the subjectPublicKey BIT STRING contents), which is the
    RFC 5280 4.2.1.2 method (1) key identifier, so CKA_ID equals the SubjectKeyIdentifier of
    the key's certificate. The private half is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
    not CKA_EXTRACTABLE, CKA_SIGN only (no decrypt, unwrap, derive).

Sessions
    One `_TokenSessions` per (module, token label) per process: a pool of read-only sessions,
    at most `pkcs11.sessions` (0 = one per core), logged in once, because PKCS#11 login state
    belongs to the application, not to a session. Token errors that a fresh session and a
    fresh login can cure (closed or invalid session, user not logged in, device removed or
    failing) are retried once after reconnecting; when the token cannot even be found, the
    module is finalised and initialised again, under a lock that keeps every other thread out
    of it, and handles from before (whose numbers may be reused) are never touched again.
    Every signature is verified with the public key before it is returned.

Threads and processes
    The module is initialised for multi-threaded use by `cryptoki.Module` (python-pkcs11's own
    initialisation would let SoftHSM2 switch its locks off). PKCS#11 handles never cross a fork:
    a child process detects the new pid, finalises the copy of the module state it inherited
    and initialises and logs in again on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11

from shirushi.asn1.keys import key_identifier
from shirushi.config import PKCS11Settings
from shirushi.errors import ConflictError, SignerError, StateError
from shirushi.signing.cryptoki import (
    CKR_OK,
    CKR_PIN_LOCKED,
    CKR_USER_ALREADY_LOGGED_IN,
    STALE,
    Module,
    Transient,
    exc_name,
    login_error,
)

T = TypeVar("T")


def _default_sessions() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --- the session pool ----------------------------------------------------------------------


class _Session:
    """A pooled session with the key objects found through it (handles are per session)."""

    __slots__ = ("epoch", "generation", "keys", "rw", "session")

    def __init__(self, session: pkcs11.Session, epoch: int, generation: int, rw: bool) -> None:
        self.session = session
        self.epoch = epoch
        self.generation = generation
        self.rw = rw
        self.keys: dict[str, Any] = {}


class _TokenSessions:
    """Sessions on one token, logged in once, shared by every keystore of this process.

    Lock order: the pool's condition, then the module lock; nothing waits on the pool's
    condition while holding the module lock.
    """

    def __init__(self, module: Module, label: str, size: int, pin: Callable[[], str]) -> None:
        self.module = module
        self.label = label
        self.size = size
        self._pin = pin
        self._salt = secrets.token_bytes(16)
        self._pin_digest = self._digest(pin())
        # Settings objects whose PIN was compared already (frozen, so hashable).
        self.accepted: set[PKCS11Settings] = set()
        self._cond = threading.Condition()
        self._idle: list[_Session] = []
        self._open = 0  # sessions of the current generation, idle or lent out
        self._generation = 0
        # One key generation at a time in this process, so that threads racing for one
        # label see each other's key; other processes are handled after the fact.
        self.generating = threading.Lock()
        self._token = self._connect_retrying()

    def _digest(self, pin: str) -> bytes:
        return hashlib.sha256(self._salt + pin.encode()).digest()

    def same_pin(self, pin: str) -> bool:
        return hmac.compare_digest(self._digest(pin), self._pin_digest)

    def _connect_retrying(self) -> pkcs11.Token:
        # SoftHSM2 rewrites token.object on every C_Login; a process scanning the token or
        # logging in at that moment misses the token or gets CKR_GENERAL_ERROR, so processes
        # starting together (presign workers) fail now and then. Such failures are tried again
        # with a short back-off; PIN errors are not.
        for delay in (0.05, 0.1, 0.2, 0.4, None):
            with self.module.lock.shared():
                epoch = self.module.epoch
                try:
                    return self._connect()
                except Transient as exc:
                    if delay is None:
                        raise
                    reinitialise = exc.reinitialise
            time.sleep(delay)
            if reinitialise:
                self.module.reinitialise(epoch)
        raise AssertionError("unreachable")

    def _connect(self) -> pkcs11.Token:
        """Find the token, open one session and log in (module lock held, pool empty)."""
        token = self.module.token(self.label)
        if token.flags & TokenFlag.USER_PIN_LOCKED:
            raise login_error(CKR_PIN_LOCKED, self.label)
        try:
            session = token.open()
        except p11.PKCS11Error as exc:
            raise Transient(f"cannot open a session on PKCS#11 token {self.label!r}: {exc_name(exc)}") from None
        rv = self.module.login(session, self._pin())
        if rv not in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            with contextlib.suppress(p11.PKCS11Error):
                session.close()
            raise login_error(rv, self.label)
        self._idle.append(_Session(session, self.module.epoch, self._generation, rw=False))
        self._open = 1
        return token

    def _reserve(self, rw: bool) -> tuple[_Session | None, pkcs11.Token, int]:
        """An idle session, or (None, token, generation): leave to open one. Waits if full."""
        with self._cond:
            if not rw:
                while not self._idle and self._open >= self.size:
                    self._cond.wait()
                if self._idle:
                    s = self._idle.pop()
                    return s, self._token, s.generation
                self._open += 1
            return None, self._token, self._generation

    def _close(self, s: _Session) -> None:
        # Sessions are opened without a PIN, so python-pkcs11's close() never calls C_Logout.
        # Errors only mean that the session was gone already.
        with self.module.lock.shared():
            if s.epoch == self.module.epoch:
                with contextlib.suppress(p11.PKCS11Error):
                    s.session.close()

    def _release(self, s: _Session) -> None:
        if not s.rw:
            with self._cond:
                if s.generation == self._generation:
                    self._idle.append(s)
                    self._cond.notify()
                    return
        self._close(s)

    def _give_back(self, generation: int, rw: bool) -> None:
        """A reserved place in the pool was not used (or its session was dropped)."""
        if not rw:
            with self._cond:
                if generation == self._generation:
                    self._open -= 1
                self._cond.notify()

    def _recover(self, generation: int) -> None:
        """Drop every session of `generation`, reconnect and log in again (once per failure)."""
        with self._cond:
            if generation != self._generation:
                return  # another thread has reconnected already
            self._generation += 1
            stale, self._idle, self._open = self._idle, [], 0
            for s in stale:
                self._close(s)
            # When the module state itself is broken (device removed, finalised behind our
            # back) this initialises it again; other tokens' pools then recover on their own.
            self._token = self._connect_retrying()
            self._cond.notify_all()

    def run(self, what: str, fn: Callable[[_Session], T], rw: bool = False) -> T:
        """Run `fn` on a session; reconnect and retry once after errors of a stale session."""
        for attempt in (1, 2):
            s, token, generation = self._reserve(rw)
            try:
                with self.module.lock.shared():
                    if s is None:
                        s = _Session(token.open(rw=rw), self.module.epoch, generation, rw)
                    elif s.epoch != self.module.epoch:
                        raise p11.SessionHandleInvalid("module initialised again")
                    result = fn(s)
            except STALE as exc:
                if s is not None:
                    self._close(s)
                self._give_back(generation, rw)
                if attempt == 2:
                    raise SignerError(
                        f"PKCS#11 token {self.label!r}: {what} failed after logging in again: {exc_name(exc)}"
                    ) from None
                self._recover(generation)
                continue
            except BaseException as exc:
                if s is not None:
                    self._release(s)
                else:
                    self._give_back(generation, rw)
                if isinstance(exc, p11.PKCS11Error):
                    raise self._failed(what, exc) from None
                raise
            self._release(s)
            return result
        raise AssertionError("unreachable")

    def _failed(self, what: str, exc: BaseException) -> SignerError:
        return SignerError(f"PKCS#11 token {self.label!r}: {what} failed: {exc_name(exc)}")

    def sign(self, name: str, tbs: bytes) -> bytes:
        def op(s: _Session) -> bytes:
            key = s.keys.get(name)
            if key is None:
                key = s.keys[name] = _private_key(s.session, name, self.label)
            signature: bytes = key.sign(tbs, mechanism=Mechanism.SHA256_RSA_PKCS)
            return signature

        return self.run(f"signing with key {name!r}", op)

    def close(self) -> None:
        """Log out and close every idle session; sessions in use close when returned."""
        with self._cond:
            self._generation += 1
            idle, self._idle, self._open = self._idle, [], 0
            with self.module.lock.shared():
                current = [s for s in idle if s.epoch == self.module.epoch]
                if current:
                    # A non-zero result only means the login was gone already.
                    self.module.logout(current[0].session)
                for s in current:
                    with contextlib.suppress(p11.PKCS11Error):
                        s.session.close()
            self._cond.notify_all()


def _find(session: pkcs11.Session, name: str, cls: ObjectClass) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: name}))


def _private_key(session: pkcs11.Session, name: str, token: str) -> Any:
    found = _find(session, name, ObjectClass.PRIVATE_KEY)
    if not found:
        raise StateError(f"no private key labelled {name!r} on PKCS#11 token {token!r}; run `shirushi init` first")
    if len(found) > 1:
        raise SignerError(f"{len(found)} private keys are labelled {name!r} on PKCS#11 token {token!r}")
    return found[0]


def _public_of(key: Any) -> rsa.RSAPublicKey:
    # Modulus and public exponent stay readable on a sensitive private key (PKCS#11 2.40 4.9);
    # reading them from the private half guarantees the public key matches what signs.
    attrs = key.get_attributes([Attribute.KEY_TYPE, Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
    if attrs[Attribute.KEY_TYPE] != KeyType.RSA:
        raise SignerError(f"the key labelled {key[Attribute.LABEL]!r} is not an RSA key")
    n = int.from_bytes(attrs[Attribute.MODULUS], "big")
    e = int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


# --- per-process registry ------------------------------------------------------------------

_registry_lock = threading.Lock()
_modules: dict[str, Module] = {}
_tokens: dict[tuple[str, str], _TokenSessions] = {}
_pid = os.getpid()


def _forget_parent_state() -> None:
    """In a forked child: the parent's sessions and login are not ours; start from scratch."""
    global _registry_lock, _pid
    # A lock another parent thread held at the fork stays held in the child: start afresh.
    _registry_lock = threading.Lock()
    _modules.clear()
    _tokens.clear()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forget_parent_state)


def _sessions_for(settings: PKCS11Settings) -> _TokenSessions:
    if _pid != os.getpid():  # forked by a path that skipped the at-fork hooks
        _forget_parent_state()
    path = os.path.abspath(settings.module)
    key = (path, settings.token_label)
    with _registry_lock:
        pool = _tokens.get(key)
        if pool is not None:
            if settings in pool.accepted:
                return pool
            if not pool.same_pin(settings.pin()):
                raise SignerError(
                    f"PKCS#11 token {settings.token_label!r} is already logged in by this process "
                    f"with a different user PIN; one process uses one PIN per token"
                )
            pool.accepted.add(settings)
            return pool
        module = _modules.get(path)
        if module is None:
            module = _modules[path] = Module(path)
        size = settings.sessions or _default_sessions()
        pool = _tokens[key] = _TokenSessions(module, settings.token_label, size, settings.pin)
        pool.accepted.add(settings)
        return pool


# --- public classes ------------------------------------------------------------------------


class PKCS11Signer:
    """Signs with one private key on a token (CKM_SHA256_RSA_PKCS); holds no handles itself.

    Safe to share between threads and to carry into a forked child: every call borrows a
    session from this process's pool.
    """

    def __init__(self, settings: PKCS11Settings, name: str, public: rsa.RSAPublicKey) -> None:
        self._settings = settings
        self._name = name
        self._public = public
        self._key_id = key_identifier(public)

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

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(self, tbs: bytes) -> bytes:
        """PKCS#1 v1.5 signature over SHA-256(tbs), made inside the token. Blocks."""
        signature = _sessions_for(self._settings).sign(self._name, tbs)
        # A CA must never publish a signature that does not verify (a token fault, a handle
        # that names another key); checking costs about 30 us next to a signature's ~1 ms.
        try:
            self._public.verify(signature, tbs, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignerError(
                f"{self.label}: the token returned a signature that does not verify with the key's public key"
            ) from None
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

    def _sessions(self) -> _TokenSessions:
        return _sessions_for(self.settings)

    def exists(self, name: str) -> bool:
        """True when a private key labelled `name` is on the token."""

        def op(s: _Session) -> bool:
            return bool(_find(s.session, name, ObjectClass.PRIVATE_KEY))

        return self._sessions().run(f"looking up key {name!r}", op)

    def generate(self, name: str, bits: int = 2048) -> PKCS11Signer:
        """Generate an RSA key pair inside the token; ConflictError if `name` is taken."""
        if bits < 2048:
            raise SignerError(f"RSA keys must have at least 2048 bits, not {bits}")
        sessions = self._sessions()
        token = self.settings.token_label

        def op(s: _Session) -> rsa.RSAPublicKey:
            session = s.session
            taken = _find(session, name, ObjectClass.PRIVATE_KEY) or _find(session, name, ObjectClass.PUBLIC_KEY)
            if taken:
                raise ConflictError(
                    f"a key labelled {name!r} exists already on PKCS#11 token {token!r}; refusing to overwrite it"
                )
            public, private = session.generate_keypair(
                KeyType.RSA,
                bits,
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
            pub = _public_of(private)
            # CKA_ID can only be computed once the modulus exists, so it is set afterwards.
            key_id = key_identifier(pub)
            private[Attribute.ID] = key_id
            public[Attribute.ID] = key_id
            # PKCS#11 has no "create unless the label exists". Threads of this process are
            # serialised by `generating`; for another process that created the label while
            # this one generated, whoever sees two keys removes its own and refuses. SoftHSM2
            # may show another process's new object only later, so that check is best effort:
            # callers must not run two `init`s at once.
            if len(_find(session, name, ObjectClass.PRIVATE_KEY)) > 1:
                private.destroy()
                public.destroy()
                raise ConflictError(f"another process created key {name!r} on PKCS#11 token {token!r} at the same time")
            return pub

        with sessions.generating:
            public = sessions.run(f"generating key {name!r}", op, rw=True)
        return PKCS11Signer(self.settings, name, public)

    def open(self, name: str) -> PKCS11Signer:
        """Open the existing key `name` (StateError when it is missing)."""

        def op(s: _Session) -> rsa.RSAPublicKey:
            key = s.keys[name] = _private_key(s.session, name, self.settings.token_label)
            if not key[Attribute.SIGN]:
                raise SignerError(f"the key labelled {name!r} is not allowed to sign (CKA_SIGN false)")
            return _public_of(key)

        public = self._sessions().run(f"opening key {name!r}", op)
        return PKCS11Signer(self.settings, name, public)

    def close(self) -> None:
        """Log out and close this process's sessions on the token; later calls reconnect."""
        key = (os.path.abspath(self.settings.module), self.settings.token_label)
        with _registry_lock:
            pool = _tokens.pop(key, None)
        if pool is not None:
            pool.close()
