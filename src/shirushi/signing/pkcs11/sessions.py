"""The PKCS#11 session pool: sessions on one token, logged in once per process. Does I/O (the token).

See the package docstring for the rules (retries, re-initialisation, fork safety).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature

from shirushi.config import PKCS11Settings
from shirushi.errors import SignerError, StateError
from shirushi.signing import PublicKey
from shirushi.signing.pkcs11.cryptoki import (
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


class Session:
    """A pooled session with the key objects found through it (handles are per session)."""

    __slots__ = ("epoch", "generation", "keys", "rw", "session")

    def __init__(self, session: pkcs11.Session, epoch: int, generation: int, rw: bool) -> None:
        self.session = session
        self.epoch = epoch
        self.generation = generation
        self.rw = rw
        self.keys: dict[str, Any] = {}


class TokenSessions:
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
        self._idle: list[Session] = []
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
        self._idle.append(Session(session, self.module.epoch, self._generation, rw=False))
        self._open = 1
        return token

    def _reserve(self, rw: bool) -> tuple[Session | None, pkcs11.Token, int]:
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

    def _close(self, s: Session) -> None:
        # Sessions are opened without a PIN, so python-pkcs11's close() never calls C_Logout.
        # Errors only mean that the session was gone already.
        with self.module.lock.shared():
            if s.epoch == self.module.epoch:
                with contextlib.suppress(p11.PKCS11Error):
                    s.session.close()

    def _release(self, s: Session) -> None:
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

    def run(self, what: str, fn: Callable[[Session], T], rw: bool = False) -> T:
        """Run `fn` on a session; reconnect and retry once after errors of a stale session."""
        for attempt in (1, 2):
            s, token, generation = self._reserve(rw)
            try:
                with self.module.lock.shared():
                    if s is None:
                        s = Session(token.open(rw=rw), self.module.epoch, generation, rw)
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
        def op(s: Session) -> bytes:
            key = s.keys.get(name)
            if key is None:
                key = s.keys[name] = private_key(s.session, name, self.label)
            if key.key_type == KeyType.EC:
                # CKM_ECDSA over the digest (every token has it; CKM_ECDSA_SHA256 is optional),
                # and the token's r || s in the DER Ecdsa-Sig-Value X.509 expects (RFC 5758 3.2).
                raw: bytes = key.sign(hashlib.sha256(tbs).digest(), mechanism=Mechanism.ECDSA)
                return encode_ecdsa_signature(raw)
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


def find_objects(session: pkcs11.Session, name: str, cls: ObjectClass) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: name}))


def private_key(session: pkcs11.Session, name: str, token: str) -> Any:
    found = find_objects(session, name, ObjectClass.PRIVATE_KEY)
    if not found:
        raise StateError(f"no private key labelled {name!r} on PKCS#11 token {token!r}; run `shirushi init` first")
    if len(found) > 1:
        raise SignerError(f"{len(found)} private keys are labelled {name!r} on PKCS#11 token {token!r}")
    return found[0]


def public_of(session: pkcs11.Session, key: Any) -> PublicKey:
    """The public key of private key object `key`: RSA read from the private half itself, EC
    from the public object of the same label (a private EC object carries no CKA_EC_POINT).
    Every signature is verified against it (keys.py), so a mismatched public object is caught."""
    key_type = key[Attribute.KEY_TYPE]
    label = key[Attribute.LABEL]
    if key_type == KeyType.RSA:
        # Modulus and public exponent stay readable on a sensitive private key (PKCS#11 2.40 4.9);
        # reading them from the private half guarantees the public key matches what signs.
        attrs = key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        n = int.from_bytes(attrs[Attribute.MODULUS], "big")
        e = int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if key_type == KeyType.EC:
        found = find_objects(session, label, ObjectClass.PUBLIC_KEY)
        if len(found) != 1:
            raise SignerError(f"EC key {label!r}: expected one public key object with its label, found {len(found)}")
        public = serialization.load_der_public_key(encode_ec_public_key(found[0]))
        if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
            return public
        raise SignerError(f"EC key {label!r} is not on curve P-256")
    raise SignerError(f"the key labelled {label!r} is neither an RSA nor an EC key")


# --- per-process registry ------------------------------------------------------------------

_registry_lock = threading.Lock()
_modules: dict[str, Module] = {}
_tokens: dict[tuple[str, str], TokenSessions] = {}
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


def sessions_for(settings: PKCS11Settings) -> TokenSessions:
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
        pool = _tokens[key] = TokenSessions(module, settings.token_label, size, settings.pin)
        pool.accepted.add(settings)
        return pool


def drop_sessions(settings: PKCS11Settings) -> TokenSessions | None:
    """Forget this process's pool on the token (the caller closes it); the next use reconnects."""
    with _registry_lock:
        return _tokens.pop((os.path.abspath(settings.module), settings.token_label), None)
