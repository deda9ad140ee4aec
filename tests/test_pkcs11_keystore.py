"""PKCS11KeyStore on a real SoftHSM2 token: key generation, signing, errors, sessions, fork."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import SubjectKeyIdentifier

from shirushi.asn1.keys import key_identifier
from shirushi.config import CASettings, Settings
from shirushi.errors import ConflictError, SignerError, StateError
from shirushi.signing import ECDSA_P256, SignerKey, verify
from shirushi.signing.backend import keystore
from shirushi.signing.pkcs11 import PKCS11KeyStore, PKCS11Signer
from shirushi.signing.pkcs11.cryptoki import CKR_PIN_LOCKED, login_error
from shirushi.signing.software import FileKeyStore
from support.softhsm import SPARE_LABEL, SoftHSM, close_all_sessions, logout, write_conf


def fresh_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def store(softhsm: SoftHSM) -> PKCS11KeyStore:
    return PKCS11KeyStore(softhsm.settings(sessions=3))


@pytest.fixture(scope="module")
def signer(store: PKCS11KeyStore) -> PKCS11Signer:
    return store.generate(fresh_name())


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    # Nothing chained (or chaining suppressed with `from None`) for a traceback to show.
    error = exc.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return message


# --- generation and signing ----------------------------------------------------------------


def test_generate_open_and_sign_verifies(store: PKCS11KeyStore) -> None:
    name = fresh_name()
    assert not store.exists(name)
    generated = store.generate(name)
    assert store.exists(name)
    opened = store.open(name)
    assert opened.public_key().public_numbers() == generated.public_key().public_numbers()
    assert opened.public_key().key_size == 2048
    assert opened.label == f"pkcs11:token=shirushi;object={name};type=private"
    tbs = b"to be signed " + name.encode()
    verify(opened.public_key(), opened.sign(tbs), tbs)
    verify(generated.public_key(), generated.sign(tbs), tbs)


def test_signature_is_deterministic_pkcs1v15(signer: PKCS11Signer) -> None:
    # PKCS#1 v1.5 has no randomness: the same input gives the same signature, and pyca's
    # SignerKey adapter passes exactly that through.
    tbs = b"same input"
    adapter = SignerKey(signer)
    assert signer.sign(tbs) == adapter.sign(tbs, padding.PKCS1v15(), hashes.SHA256())


def test_key_id_is_the_subject_key_identifier(signer: PKCS11Signer) -> None:
    ski = SubjectKeyIdentifier.from_public_key(signer.public_key()).digest
    assert signer.key_id == ski == key_identifier(signer.public_key())


def test_private_key_is_sensitive_and_never_extractable(softhsm: SoftHSM, signer: PKCS11Signer) -> None:
    listing = softhsm.list_objects()
    blocks = re.split(r"\n(?=\S)", listing)
    private = [b for b in blocks if b.startswith("Private Key Object") and f"label:      {signer.name}" in b]
    public = [b for b in blocks if b.startswith("Public Key Object") and f"label:      {signer.name}" in b]
    assert len(private) == 1 and len(public) == 1, listing
    fields = dict(re.findall(r"^\s+(\w[\w ]*?):\s+(.*)$", private[0], flags=re.M))
    access = [flag.strip() for flag in fields["Access"].split(",")]
    assert "sensitive" in access and "always sensitive" in access
    assert "never extractable" in access and "extractable" not in access
    usage = [flag.strip() for flag in fields["Usage"].split(",")]
    assert "sign" in usage
    assert not {"decrypt", "unwrap", "derive"} & set(usage)
    assert fields["ID"] == signer.key_id.hex()
    public_fields = dict(re.findall(r"^\s+(\w[\w ]*?):\s+(.*)$", public[0], flags=re.M))
    assert public_fields["ID"] == signer.key_id.hex()


def test_generate_refuses_an_existing_label(store: PKCS11KeyStore, signer: PKCS11Signer) -> None:
    with pytest.raises(ConflictError) as exc:
        store.generate(signer.name)
    assert signer.name in one_line(exc) and "refusing" in str(exc.value)
    # The existing key is untouched.
    assert store.open(signer.name).public_key().public_numbers() == (signer.public_key().public_numbers())


def test_racing_generations_leave_one_key(store: PKCS11KeyStore) -> None:
    name = fresh_name()
    outcomes: list[str] = []

    def generate() -> None:
        try:
            store.generate(name)
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=generate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "created"]
    assert store.exists(name)


def _generate_in_child(store: PKCS11KeyStore, name: str, conn: multiprocessing.connection.Connection) -> None:
    try:
        store.generate(name)
        conn.send("created")
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")


def test_generate_refuses_a_label_another_process_created(store: PKCS11KeyStore) -> None:
    # This process is logged in (and the module has scanned the token) before the other
    # process creates the key; the check must still see it.
    name = fresh_name()
    assert not store.exists(name)
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_generate_in_child, args=(store, name, child_end))
    child.start()
    assert parent_end.recv() == "created"
    child.join(timeout=60)
    with pytest.raises(ConflictError):
        store.generate(name)
    assert store.exists(name)


def test_generate_refuses_unknown_key_types(store: PKCS11KeyStore) -> None:
    name = fresh_name()
    with pytest.raises(SignerError, match="rsa-2048, ecdsa-p256"):
        store.generate(name, "rsa-1024")
    assert not store.exists(name)


def test_ecdsa_p256_key_generates_opens_and_signs_in_the_token(store: PKCS11KeyStore) -> None:
    """The OCSP signer option `ocsp.signer_key = "ecdsa-p256"` on the HSM: CKM_ECDSA inside the
    token, the signature DER-encoded and checked against the public object of the same label."""
    name = fresh_name()
    generated = store.generate(name, ECDSA_P256)
    opened = store.open(name)
    public = opened.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    assert public == generated.public_key()
    assert opened.key_id == key_identifier(public)
    tbs = b"to be signed " + name.encode()
    signature = opened.sign(tbs)
    verify(public, signature, tbs)
    public.verify(signature, tbs, ec.ECDSA(hashes.SHA256()))  # pyca's own check, DER Ecdsa-Sig-Value
    assert opened.sign(tbs) != signature  # ECDSA: a fresh k every time


def test_open_missing_key_says_to_run_init(store: PKCS11KeyStore) -> None:
    with pytest.raises(StateError) as exc:
        store.open("no-such-key")
    assert "shirushi init" in one_line(exc) and "'no-such-key'" in str(exc.value)


# --- errors --------------------------------------------------------------------------------


def test_wrong_pin_is_one_line_without_the_pin(softhsm: SoftHSM) -> None:
    store = PKCS11KeyStore(softhsm.settings(token_label=SPARE_LABEL, user_pin="98765"))
    with pytest.raises(SignerError) as exc:
        store.exists("anything")
    message = one_line(exc)
    assert "CKR_PIN_INCORRECT" in message and SPARE_LABEL in message
    assert "98765" not in message and "98765" not in repr(store)
    assert "98765" not in repr(store.settings)


def test_pin_from_environment_variable(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIRUSHI_TEST_PIN", softhsm.pin)
    settings = softhsm.settings(token_label=SPARE_LABEL, user_pin="", user_pin_env="SHIRUSHI_TEST_PIN")
    store = PKCS11KeyStore(settings)
    try:
        assert store.exists("nothing-here") is False
    finally:
        store.close()


def test_second_pin_for_a_logged_in_token_is_refused(softhsm: SoftHSM, store: PKCS11KeyStore) -> None:
    assert store.exists("warm-up") is False  # this process is now logged in to the token
    other = PKCS11KeyStore(softhsm.settings(user_pin="0000"))
    with pytest.raises(SignerError) as exc:
        other.exists("anything")
    assert "different user PIN" in one_line(exc) and "0000" not in str(exc.value)


def test_locked_pin_message() -> None:
    # SoftHSM2 never locks a PIN, so the mapping from the return value is checked directly.
    message = str(login_error(CKR_PIN_LOCKED, "shirushi"))
    assert "CKR_PIN_LOCKED" in message and "locked" in message and "\n" not in message


def test_missing_token_label(softhsm: SoftHSM) -> None:
    store = PKCS11KeyStore(softhsm.settings(token_label="no-such-token"))
    with pytest.raises(SignerError) as exc:
        store.open("root")
    message = one_line(exc)
    assert "'no-such-token'" in message and "softhsm2-util --init-token" in message
    assert "'shirushi'" in message  # the labels that do exist


def test_missing_module_file(softhsm: SoftHSM, tmp_path: Path) -> None:
    store = PKCS11KeyStore(softhsm.settings(module=str(tmp_path / "libnothing.so")))
    with pytest.raises(SignerError) as exc:
        store.open("root")
    assert "does not exist" in one_line(exc) and "libnothing.so" in str(exc.value)


def test_file_that_is_not_a_pkcs11_module(softhsm: SoftHSM, tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_text("not a shared object\n")
    store = PKCS11KeyStore(softhsm.settings(module=str(fake)))
    with pytest.raises(SignerError) as exc:
        store.open("root")
    assert "not a loadable PKCS#11 module" in one_line(exc)


def test_library_without_pkcs11_entry_point(softhsm: SoftHSM) -> None:
    libc = next(
        p
        for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6")
        if Path(p).exists()
    )
    store = PKCS11KeyStore(softhsm.settings(module=libc))
    with pytest.raises(SignerError) as exc:
        store.open("root")
    assert "no C_GetFunctionList" in one_line(exc)


# --- sessions ------------------------------------------------------------------------------


def test_relogin_after_all_sessions_closed_behind_the_pool(softhsm: SoftHSM, signer: PKCS11Signer) -> None:
    verify(signer.public_key(), signer.sign(b"before"), b"before")
    close_all_sessions(softhsm.module, softhsm.slot())
    verify(signer.public_key(), signer.sign(b"after"), b"after")


def test_relogin_after_logout_behind_the_pool(softhsm: SoftHSM, signer: PKCS11Signer) -> None:
    verify(signer.public_key(), signer.sign(b"before"), b"before")
    logout(softhsm.module, softhsm.slot())
    verify(signer.public_key(), signer.sign(b"after"), b"after")


def test_concurrent_signing_from_threads(signer: PKCS11Signer) -> None:
    # More threads than pooled sessions (3): some wait for a session.
    results: dict[bytes, bytes] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for i in range(15):
                tbs = f"worker {worker} message {i}".encode()
                signature = signer.sign(tbs)
                with lock:
                    results[tbs] = signature
        except BaseException as exc:  # reported below, where pytest sees it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 90
    for tbs, signature in results.items():
        verify(signer.public_key(), signature, tbs)


def test_sign_async_signs_outside_the_event_loop_thread(signer: PKCS11Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[int] = set()
    real_sign = signer.sign

    def recording_sign(tbs: bytes) -> bytes:
        threads.add(threading.get_ident())
        return real_sign(tbs)

    monkeypatch.setattr(signer, "sign", recording_sign)

    async def main() -> tuple[int, list[bytes]]:
        signatures = await asyncio.gather(*(signer.sign_async(b"m%d" % i) for i in range(8)))
        return threading.get_ident(), signatures

    loop_thread, signatures = asyncio.run(main())
    assert threads and loop_thread not in threads
    for i, signature in enumerate(signatures):
        verify(signer.public_key(), signature, b"m%d" % i)


def test_module_reinitialised_while_other_threads_sign(softhsm: SoftHSM, signer: PKCS11Signer) -> None:
    # Looking for a missing token finalises and initialises the module again (a token may
    # appear only after a fresh scan); threads signing meanwhile must neither crash the
    # module nor use a handle from before, and every signature must verify.
    stop = threading.Event()
    signed: list[int] = []
    errors: list[BaseException] = []

    def sign_until_stopped(worker: int) -> None:
        count = 0
        try:
            while not stop.is_set():
                tbs = b"worker %d signature %d" % (worker, count)
                verify(signer.public_key(), signer.sign(tbs), tbs)
                count += 1
        except BaseException as exc:  # reported below, where pytest sees it
            errors.append(exc)
        signed.append(count)

    threads = [threading.Thread(target=sign_until_stopped, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            with pytest.raises(SignerError, match="no PKCS#11 token labelled"):
                PKCS11KeyStore(softhsm.settings(token_label="appears-later")).exists("x")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert len(signed) == 3 and all(signed)


def _sign_in_child(signer: PKCS11Signer, conn: multiprocessing.connection.Connection) -> None:
    try:
        conn.send(("ok", signer.sign(b"from the child")))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def test_signing_in_a_forked_child(signer: PKCS11Signer) -> None:
    # The parent is logged in with open sessions when it forks.
    verify(signer.public_key(), signer.sign(b"parent"), b"parent")
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_sign_in_child, args=(signer, child_end))
    child.start()
    status, value = parent_end.recv()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert status == "ok", value
    verify(signer.public_key(), value, b"from the child")
    # The parent's sessions survived the child's re-initialisation.
    verify(signer.public_key(), signer.sign(b"parent again"), b"parent again")


# --- backend choice ------------------------------------------------------------------------


def test_backend_pkcs11(softhsm: SoftHSM) -> None:
    settings = Settings(ca=CASettings(key_backend="pkcs11"), pkcs11=softhsm.settings())
    store = keystore(settings)
    assert isinstance(store, PKCS11KeyStore) and store.settings == softhsm.settings()


@pytest.mark.e2e
def test_backend_file_never_loads_python_pkcs11(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    assert isinstance(keystore(settings), FileKeyStore)
    code = (
        "import sys\n"
        "from shirushi.config import Settings\n"
        "from shirushi.signing.backend import keystore\n"
        f"store = keystore(Settings(data_dir={str(tmp_path)!r}))\n"
        "store.generate('root')\n"
        "assert store.open('root').sign(b'x')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pkcs11'"
        " or m == 'shirushi.signing.pkcs11'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_forked_children_starting_together_all_sign(signer: PKCS11Signer) -> None:
    # Each child initialises the module and logs in at the same moment as its siblings;
    # SoftHSM2 rewrites token.object on every login, which makes a sibling miss the token
    # or fail its login now and then (about one child in five before retrying).
    verify(signer.public_key(), signer.sign(b"parent"), b"parent")
    ctx = multiprocessing.get_context("fork")
    for _round in range(4):
        ends = [ctx.Pipe() for _ in range(3)]
        children = [ctx.Process(target=_sign_in_child, args=(signer, child_end)) for _, child_end in ends]
        for child in children:
            child.start()
        answers = [parent_end.recv() for parent_end, _ in ends]
        for child in children:
            child.join(timeout=30)
        assert [status for status, _ in answers] == ["ok"] * 3, answers
        for _, signature in answers:
            verify(signer.public_key(), signature, b"from the child")


def test_signing_in_a_forked_child_that_inherits_the_module_state(
    softhsm: SoftHSM, signer: PKCS11Signer, tmp_path: Path
) -> None:
    # Without reset_on_fork SoftHSM2 hands the child a copy of the parent's initialised
    # state; the keystore must finalise that copy and start again. Needs its own process,
    # since the module reads its configuration once.
    conf = tmp_path / "softhsm2.conf"
    write_conf(conf, softhsm.conf.parent / "tokens", reset_on_fork=False)
    code = f"""
import multiprocessing, os
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from shirushi.config import PKCS11Settings
from shirushi.signing.pkcs11 import PKCS11KeyStore

def verify(signer, tbs):
    signer.public_key().verify(signer.sign(tbs), tbs, padding.PKCS1v15(), hashes.SHA256())

def child(signer):
    verify(signer, b"child %d" % os.getpid())

signer = PKCS11KeyStore(PKCS11Settings(module={softhsm.module!r}, user_pin={softhsm.pin!r})).open(
    {signer.name!r})
verify(signer, b"parent")
ctx = multiprocessing.get_context("fork")
children = [ctx.Process(target=child, args=(signer,)) for _ in range(2)]
for p in children:
    p.start()
for p in children:
    p.join(30)
assert [p.exitcode for p in children] == [0, 0], [p.exitcode for p in children]
verify(signer, b"parent again")
print("ok")
"""
    env = {**softhsm.env(), "SOFTHSM2_CONF": str(conf)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
