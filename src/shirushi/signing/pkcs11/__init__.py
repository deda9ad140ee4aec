"""PKCS#11 key backend: the CA's RSA keys are generated in and never leave a token.

Policy 6.1.1 and 6.2.1 require the CA keys to live in an HSM; this package reaches one through
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

from shirushi.signing.pkcs11.keys import PKCS11KeyStore, PKCS11Signer

__all__ = ["PKCS11KeyStore", "PKCS11Signer"]
