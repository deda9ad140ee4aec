"""A real SoftHSM2 token for tests and benchmarks, in a temporary directory.

`make_tokens()` writes its own softhsm2.conf (directories.tokendir inside the directory) and
initialises tokens with `softhsm2-util`; the `softhsm` pytest fixture does so once per test
session and points SOFTHSM2_CONF at it for the test process (the module reads it when it is
first initialised, so one configuration serves the whole process). Also helpers that act on
the token behind a keystore's back, through the module's exported C functions.
Does I/O: files, subprocesses, the PKCS#11 module.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shirushi.config import PKCS11Settings

MODULE = os.environ.get("SHIRUSHI_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
LABEL = "shirushi"
# A second token, so that login failures can be provoked without logging the first one out.
SPARE_LABEL = "shirushi-spare"
PIN = "1234"
SO_PIN = "5678"

CKF_SERIAL_SESSION = 0x4


@dataclasses.dataclass(frozen=True)
class SoftHSM:
    """Where the test tokens are and how to reach them."""

    conf: Path
    module: str = MODULE
    label: str = LABEL
    pin: str = PIN

    def settings(self, **overrides: object) -> PKCS11Settings:
        values: dict[str, object] = {"module": self.module, "token_label": self.label, "user_pin": self.pin}
        values.update(overrides)
        return PKCS11Settings(**values)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def slot(self, label: str = LABEL) -> int:
        """The slot id of the token labelled `label` (softhsm2-util renumbers slots)."""
        out = subprocess.run(
            ["softhsm2-util", "--show-slots"], env=self.env(), check=True, capture_output=True, text=True
        ).stdout
        for block in re.split(r"^Slot ", out, flags=re.M)[1:]:
            match = re.search(r"^\s*Label:\s*(.*?)\s*$", block, flags=re.M)
            if match and match.group(1) == label:
                return int(block.split()[0])
        raise LookupError(f"no token labelled {label!r}")

    def list_objects(self, label: str = LABEL) -> str:
        """`pkcs11-tool --list-objects` after logging in, as text."""
        return subprocess.run(
            # By slot: pkcs11-tool's --token-label also matches 'shirushi-spare'.
            [
                "pkcs11-tool",
                "--module",
                self.module,
                "--slot",
                str(self.slot(label)),
                "--login",
                "--pin",
                self.pin,
                "--list-objects",
            ],
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def write_conf(path: Path, tokendir: Path, *, reset_on_fork: bool) -> None:
    """A softhsm2.conf keeping tokens in `tokendir`.

    With reset_on_fork SoftHSM2 drops the state a forked child inherits, as many hardware
    modules do, so a child that does not initialise the module again fails visibly.
    """
    path.write_text(
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        f"library.reset_on_fork = {'true' if reset_on_fork else 'false'}\n"
    )


def make_tokens(
    directory: Path, labels: tuple[str, ...] = (LABEL, SPARE_LABEL), *, reset_on_fork: bool = True
) -> SoftHSM:
    """Write softhsm2.conf in `directory` and initialise one token per label."""
    if shutil.which("softhsm2-util") is None or not os.path.exists(MODULE):
        raise RuntimeError("SoftHSM2 is not installed (apt-get install softhsm2 opensc)")
    tokendir = directory / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    write_conf(conf, tokendir, reset_on_fork=reset_on_fork)
    hsm = SoftHSM(conf)
    for label in labels:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            env=hsm.env(),
            check=True,
            capture_output=True,
        )
    return hsm


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    """Tokens 'shirushi' and 'shirushi-spare' (user PIN 1234); SOFTHSM2_CONF set for the run."""
    hsm = make_tokens(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def _cryptoki(module: str) -> ctypes.CDLL:
    # dlopen of the same path returns the instance this process already uses, so these calls
    # act on the keystore's own sessions and login.
    return ctypes.CDLL(module)


def close_all_sessions(module: str, slot: int) -> None:
    """C_CloseAllSessions on `slot`: every session of this process, and so the login, is gone."""
    lib = _cryptoki(module)
    lib.C_CloseAllSessions.argtypes = [ctypes.c_ulong]
    rv = lib.C_CloseAllSessions(slot)
    assert rv == 0, f"C_CloseAllSessions returned 0x{rv:x}"


def logout(module: str, slot: int) -> None:
    """C_Logout through a session of our own: the whole application is logged out."""
    lib = _cryptoki(module)
    handle = ctypes.c_ulong()
    lib.C_OpenSession.argtypes = [
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_ulong),
    ]
    rv = lib.C_OpenSession(slot, CKF_SERIAL_SESSION, None, None, ctypes.byref(handle))
    assert rv == 0, f"C_OpenSession returned 0x{rv:x}"
    lib.C_Logout.argtypes = [ctypes.c_ulong]
    rv = lib.C_Logout(handle)
    assert rv == 0, f"C_Logout returned 0x{rv:x}"
    lib.C_CloseSession.argtypes = [ctypes.c_ulong]
    lib.C_CloseSession(handle)
