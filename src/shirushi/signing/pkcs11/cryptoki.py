"""The PKCS#11 module in this process: loading, multi-threaded initialisation, login.

python-pkcs11 calls C_Initialize(NULL), which tells the module that the application will never
call it from two threads at once; SoftHSM2 then disables its own locks, and two threads signing at
once corrupt its heap. `Module` therefore initialises the module again with CKF_OS_LOCKING_OK
through a few ctypes calls into the same function list (the only calls python-pkcs11 does not
expose; login is one too, so that closing a pooled session never logs the others out), and counts
initialisations so that handles from an earlier one are never used again. Does I/O: loads the
module and talks to it. Used by `sessions.py` (the session pool) and `keys.py` (the key classes).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import exceptions as p11

from shirushi.errors import SignerError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as P11Lib

# PKCS#11 v2.40 return values and flags used by the ctypes calls below (pkcs11t.h).
CKR_OK = 0x000
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_INVALID = 0x0A1
CKR_PIN_LEN_RANGE = 0x0A2
CKR_PIN_EXPIRED = 0x0A3
CKR_PIN_LOCKED = 0x0A4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_GENERAL_ERROR = 0x005
CKR_FUNCTION_FAILED = 0x006
CKR_DEVICE_ERROR = 0x030
CKF_OS_LOCKING_OK = 0x002
CKU_USER = 1

# Login failures that say nothing about the PIN: worth another try.
_TRANSIENT_RV = (CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, CKR_DEVICE_ERROR)

_RV_NAMES = {
    CKR_PIN_INCORRECT: "CKR_PIN_INCORRECT",
    CKR_PIN_INVALID: "CKR_PIN_INVALID",
    CKR_PIN_LEN_RANGE: "CKR_PIN_LEN_RANGE",
    CKR_PIN_EXPIRED: "CKR_PIN_EXPIRED",
    CKR_PIN_LOCKED: "CKR_PIN_LOCKED",
    CKR_USER_PIN_NOT_INITIALIZED: "CKR_USER_PIN_NOT_INITIALIZED",
    CKR_CRYPTOKI_NOT_INITIALIZED: "CKR_CRYPTOKI_NOT_INITIALIZED",
    CKR_GENERAL_ERROR: "CKR_GENERAL_ERROR",
    CKR_FUNCTION_FAILED: "CKR_FUNCTION_FAILED",
    CKR_DEVICE_ERROR: "CKR_DEVICE_ERROR",
    0x032: "CKR_DEVICE_REMOVED",
    0x0B3: "CKR_SESSION_HANDLE_INVALID",
}

# Errors that mean "this session or this login is gone", not "this request is wrong":
# reconnecting and logging in again may cure them, so the operation is retried once.
STALE: tuple[type[Exception], ...] = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.UserNotLoggedIn,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    # After a logout the handles of private objects are no longer valid (SoftHSM2 does this).
    p11.KeyHandleInvalid,
    p11.ObjectHandleInvalid,
)


def rv_name(rv: int) -> str:
    return _RV_NAMES.get(rv, f"CKR 0x{rv:08X}")


def exc_name(exc: BaseException) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --- the few Cryptoki calls made through ctypes --------------------------------------------

_VoidFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_HandleFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong)
_LoginFn = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong)


class _InitArgs(ctypes.Structure):
    """CK_C_INITIALIZE_ARGS."""

    _fields_ = (
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    )


class _FunctionList(ctypes.Structure):
    """The head of CK_FUNCTION_LIST, up to C_Logout, in the order of pkcs11f.h."""

    _fields_ = (
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("C_Initialize", _VoidFn),
        ("C_Finalize", _VoidFn),
        *(
            (name, ctypes.c_void_p)
            for name in (
                "C_GetInfo",
                "C_GetFunctionList",
                "C_GetSlotList",
                "C_GetSlotInfo",
                "C_GetTokenInfo",
                "C_GetMechanismList",
                "C_GetMechanismInfo",
                "C_InitToken",
                "C_InitPIN",
                "C_SetPIN",
                "C_OpenSession",
                "C_CloseSession",
                "C_CloseAllSessions",
                "C_GetSessionInfo",
                "C_GetOperationState",
                "C_SetOperationState",
            )
        ),
        ("C_Login", _LoginFn),
        ("C_Logout", _HandleFn),
    )


# Loaded modules outlive forks on purpose: the child reuses the mapping and the python-pkcs11
# wrapper and only re-initialises the module state.
_LOADED: dict[str, tuple[P11Lib, Any]] = {}
_LOAD_LOCK = threading.Lock()


def _reset_load_lock() -> None:
    # A lock another parent thread held at the fork stays held in the child: start afresh.
    global _LOAD_LOCK
    _LOAD_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_load_lock)


def _load(path: str) -> tuple[P11Lib, Any]:
    """Load a PKCS#11 module once per process lineage; returns (python-pkcs11 lib, functions)."""
    with _LOAD_LOCK:
        if path in _LOADED:
            return _LOADED[path]
        if not os.path.isfile(path):
            raise SignerError(f"PKCS#11 module {path} does not exist (pkcs11.module)")
        try:
            dll = ctypes.CDLL(path)
        except OSError as exc:
            reason = str(exc).splitlines()[0]
            raise SignerError(f"{path} is not a loadable PKCS#11 module: {reason}") from None
        get_function_list = getattr(dll, "C_GetFunctionList", None)
        if get_function_list is None:
            raise SignerError(f"{path} is not a PKCS#11 module: it has no C_GetFunctionList")
        functions = ctypes.POINTER(_FunctionList)()
        rv = get_function_list(ctypes.byref(functions))
        if rv != CKR_OK:
            raise SignerError(f"{path}: C_GetFunctionList failed with {rv_name(rv)}")
        try:
            # python-pkcs11 initialises with NULL arguments; finalise at once so that
            # Module can initialise again with OS locking (see the module docstring).
            lib = pkcs11.lib(path)
            lib.finalize()
        except p11.PKCS11Error as exc:
            raise SignerError(f"cannot initialise PKCS#11 module {path}: {exc_name(exc)}{_hint(path)}") from None
        _LOADED[path] = (lib, functions.contents)
        return _LOADED[path]


def _hint(path: str) -> str:
    if "softhsm" in os.path.basename(path):
        return " (SoftHSM2: check SOFTHSM2_CONF and its directories.tokendir)"
    return ""


class Transient(SignerError):
    """A failure that may pass when tried again: token not listed, session or login refused
    by a module error. `reinitialise` says whether the module should start afresh first."""

    def __init__(self, message: str, *, reinitialise: bool = True) -> None:
        super().__init__(message)
        self.reinitialise = reinitialise


class _SharedLock:
    """Many holders share it; `exclusive()` waits until none hold it and keeps newcomers out.

    Every call into the module holds it shared, and finalising the module (which frees every
    session) holds it exclusively, so no thread is inside the module while it is torn down.
    Never wait for anything else while holding it shared.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                if not self._holders:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._holders:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class Module:
    """One PKCS#11 module, initialised for multi-threaded use in this process.

    `epoch` counts initialisations: session and object handles from an earlier epoch are
    invalid, and their numbers may now name other sessions or keys, so they are never used
    or even closed again.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib, self._functions = _load(path)
        self.lock = _SharedLock()
        self.epoch = 0
        self._initialise()

    def _initialise(self) -> None:
        args = _InitArgs(flags=CKF_OS_LOCKING_OK)
        rv = self._functions.C_Initialize(ctypes.byref(args))
        if rv == CKR_CRYPTOKI_ALREADY_INITIALIZED:
            # State inherited from the parent through fork: finalise this copy and start again.
            self._functions.C_Finalize(None)
            rv = self._functions.C_Initialize(ctypes.byref(args))
        if rv != CKR_OK:
            raise SignerError(f"cannot initialise PKCS#11 module {self.path}: {rv_name(rv)}{_hint(self.path)}")

    def reinitialise(self, seen_epoch: int) -> None:
        """Finalise and initialise again, unless someone did since `seen_epoch`."""
        with self.lock.exclusive():
            if self.epoch != seen_epoch:
                return
            self._functions.C_Finalize(None)
            self.epoch += 1
            self._initialise()

    def token(self, label: str) -> pkcs11.Token:
        try:
            tokens = list(self.lib.get_tokens())
        except p11.PKCS11Error as exc:
            raise Transient(f"cannot list the tokens of {self.path}: {exc_name(exc)}") from None
        found = [t for t in tokens if t.label == label]
        if len(found) == 1:
            return found[0]
        if found:
            raise SignerError(f"{len(found)} PKCS#11 tokens are labelled {label!r}; labels must be unique")
        present = ", ".join(repr(t.label) for t in tokens) or "none"
        raise Transient(
            f"no PKCS#11 token labelled {label!r} in {self.path} (tokens present: {present}); "
            f"set pkcs11.token_label or create it, e.g. "
            f"`softhsm2-util --init-token --free --label {label}`"
        )

    def login(self, session: pkcs11.Session, pin: str) -> int:
        data = pin.encode()
        return int(self._functions.C_Login(session_handle(session), CKU_USER, data, len(data)))

    def logout(self, session: pkcs11.Session) -> int:
        return int(self._functions.C_Logout(session_handle(session)))


def session_handle(session: pkcs11.Session) -> int:
    handle: int = session.handle  # type: ignore[attr-defined]  # set by the Cython class
    return handle


def login_error(rv: int, label: str) -> SignerError:
    name = rv_name(rv)
    if rv == CKR_PIN_LOCKED:
        return SignerError(
            f"the user PIN of PKCS#11 token {label!r} is locked ({name}); the token's security "
            f"officer must set a new one (pkcs11-tool --login --login-type so --init-pin)"
        )
    if rv == CKR_USER_PIN_NOT_INITIALIZED:
        return SignerError(f"PKCS#11 token {label!r} has no user PIN yet ({name}); initialise it")
    if rv in (CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE, CKR_PIN_EXPIRED):
        return SignerError(
            f"PKCS#11 token {label!r} refused the user PIN ({name}); "
            f"check pkcs11.user_pin or the variable named by pkcs11.user_pin_env"
        )
    message = f"cannot log in to PKCS#11 token {label!r}: {name}"
    if rv in _TRANSIENT_RV:
        return Transient(message, reinitialise=False)
    return SignerError(message)
