"""A small RFC 8555 client for tests: flattened JWS (ES256) over real HTTP (urllib), with the
knobs a test needs to send what a stock client never would (another key, a stale nonce, a wrong
`url` header). Answers are `Answer`s; 4xx and 5xx are answers too, never exceptions."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shirushi.acme.jws import b64encode, jwk_of, thumbprint

TIMEOUT = 60.0  # seconds per request: a finalize signs and lints


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def type(self) -> str:
        """The problem type without the URN prefix ("" for a success)."""
        if self.status < 400:
            return ""
        return str(self.json.get("type", "")).removeprefix("urn:ietf:params:acme:error:")


def _request(method: str, url: str, body: bytes | None = None) -> Answer:
    headers = {"Content-Type": "application/jose+json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign_es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: bytes | None) -> dict[str, str]:
    protected = b64encode(json.dumps(header).encode())
    body = "" if payload is None else b64encode(payload)
    r, s = decode_dss_signature(key.sign(f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return {"protected": protected, "payload": body, "signature": b64encode(sig)}


def eab(kid: str, mac_key: bytes, jwk: dict[str, Any], url: str) -> dict[str, str]:
    """An External Account Binding (RFC 8555 7.3.4): HS256 over the account key."""
    protected = b64encode(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    payload = b64encode(json.dumps(jwk).encode())
    mac = hmac.new(mac_key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64encode(mac)}


class Client:
    def __init__(self, directory_url: str, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.directory = _request("GET", directory_url).json
        self.key = key or new_key()
        self.kid: str | None = None

    @property
    def jwk(self) -> dict[str, str]:
        return jwk_of(self.key.public_key())

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.jwk)

    def nonce(self) -> str:
        return _request("HEAD", self.directory["newNonce"]).headers["replay-nonce"]

    def post(
        self,
        url: str,
        payload: Any = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        jwk: bool = False,
        kid: str | None = None,
        nonce: str | None = None,
        header_url: str | None = None,
    ) -> Answer:
        """POST a JWS; `payload` None is POST-as-GET. Signed with `jwk` or the account's kid."""
        header: dict[str, Any] = {"alg": "ES256", "nonce": nonce or self.nonce(), "url": header_url or url}
        signer = key or self.key
        if jwk:
            header["jwk"] = jwk_of(signer.public_key())
        else:
            header["kid"] = kid or self.kid
        data = None if payload is None else json.dumps(payload).encode()
        return _request("POST", url, json.dumps(sign_es256(signer, header, data)).encode())

    def get(self, url: str) -> Answer:
        return _request("GET", url)

    # -- the flows ------------------------------------------------------------------------

    def register(self, **payload: Any) -> Answer:
        answer = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, jwk=True)
        if answer.status in (200, 201):
            self.kid = answer.headers["location"]
        return answer

    def order(self, *names: str) -> Answer:
        return self.post(self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})

    def authorizations(self, order: Answer) -> list[dict[str, Any]]:
        return [self.post(url).json | {"url": url} for url in order.json["authorizations"]]

    def challenge(self, authz: dict[str, Any], kind: str) -> dict[str, Any]:
        return next(c for c in authz["challenges"] if c["type"] == kind)

    def key_authorization(self, token: str) -> str:
        return f"{token}.{self.thumbprint}"

    def answer(self, challenge: dict[str, Any]) -> Answer:
        """Tell the server the challenge is ready; the server validates before it answers."""
        return self.post(challenge["url"], {})

    def poll(self, url: str, until: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.post(url).json
            if state["status"] in until or time.monotonic() > deadline:
                return dict(state)
            time.sleep(0.2)
