"""The ACME server's HTTP routes (Starlette), served by `serve` on `acme.listen`.

Every POST is a JWS (jws.py): its nonce is taken from the store (once only), its `url` must be
the URL it was sent to, it names an account by `kid` (or carries a `jwk` where RFC 8555 allows:
newAccount, revokeCert by certificate key). Errors are problem documents (RFC 8555 6.7), never a
traceback; every answer carries a fresh Replay-Nonce. Blocking work runs in the thread pool.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shirushi.acme import accounts, ari, jws, orders, revoke
from shirushi.acme.problems import Problem, from_error
from shirushi.backend import Backend
from shirushi.errors import ShirushiError

log = logging.getLogger("shirushi.acme")
MAX_BODY = 64 * 1024
NONCE_LIFETIME = dt.timedelta(hours=1)


class _Request:
    """A verified POST: the JWS, and its account unless it was signed with a jwk."""

    def __init__(self, signed: jws.Signed, account_id: str | None, account: dict[str, Any] | None, jwk: dict[str, Any]):
        self.signed = signed
        self.account_id = account_id
        self.account = account
        self.jwk = jwk

    @property
    def payload(self) -> dict[str, Any]:
        if self.signed.payload == b"":
            return {}
        return self.signed.payload_json


def _warn_unlisted_profiles(backend: Backend) -> None:
    """Say at start-up, not at the first finalize, when the issuing CA cannot issue the profile
    ACME would give (docs/acme.md: ca.issuing_ca_policy); issuance refuses it either way."""
    from shirushi.ca import profiles

    try:
        issuing = backend.authority.hierarchy().issuing
    except ShirushiError:
        return  # not initialised: serve reports that itself
    if backend.settings.acme.profile == "dv" and not profiles.asserts_policy(issuing, profiles.DV_POLICY):
        log.warning(
            'acme.profile = "dv" but the issuing CA lists neither the DV policy nor anyPolicy: '
            "accounts without an organisation binding will be refused (ca.issuing_ca_policy, docs/acme.md)"
        )


def create_app(backend: Backend) -> Starlette:
    settings = backend.settings
    base = settings.acme.base_url()
    objects = backend.store.acme
    book = orders.Orders(backend, base)
    directory_url = f"{base}directory"
    _warn_unlisted_profiles(backend)

    def now() -> dt.datetime:
        return backend.clock.now()

    def new_nonce() -> str:
        nonce = secrets.token_urlsafe(16)
        objects.add_nonce(nonce, now() + NONCE_LIFETIME)
        return nonce

    async def answer(
        body: Any, status: int = 200, headers: dict[str, str] | None = None, *, media: str = "application/json"
    ) -> Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {
            "Replay-Nonce": await run_in_threadpool(new_nonce),
            "Link": f'<{directory_url}>;rel="index"',
            "Cache-Control": "no-store",
            **(headers or {}),
        }
        return Response(content, status_code=status, headers=all_headers, media_type=media)

    async def problem(p: Problem) -> Response:
        return await answer(p.document(), p.status, p.headers(), media="application/problem+json")

    def verify(raw: bytes, url: str, *, allow_jwk: bool, need_kid: bool) -> _Request:
        signed = jws.parse(raw)
        header = signed.protected
        if header.get("alg") not in jws.ALGORITHMS:
            raise Problem("badSignatureAlgorithm", f"alg must be one of {', '.join(jws.ALGORITHMS)}")
        nonce = header.get("nonce")
        if not isinstance(nonce, str) or not objects.take_nonce(nonce, now()):
            raise Problem("badNonce", "the nonce is unknown, used or expired")
        if header.get("url") != url:
            raise Problem("unauthorized", f"the JWS url header must be {url}")
        has_jwk, has_kid = "jwk" in header, "kid" in header
        if has_jwk == has_kid:
            raise Problem("malformed", "the protected header needs exactly one of jwk and kid")
        if has_jwk:
            if need_kid or not allow_jwk:
                raise Problem("malformed", "this request must be signed by an account (kid)")
            jwk = header["jwk"]
            jws.verify(signed, jws.public_key(jwk))
            return _Request(signed, None, None, jwk)
        kid = header["kid"]
        prefix = f"{base}acme/acct/"
        account_id = kid[len(prefix) :] if isinstance(kid, str) and kid.startswith(prefix) else ""
        account = objects.get(accounts.ACCOUNT, account_id) if account_id else None
        if account is None:
            raise Problem("accountDoesNotExist", "no account at that kid")
        jws.verify(signed, jws.public_key(account["jwk"]))
        if account["status"] != "valid":
            raise Problem("unauthorized", f"the account is {account['status']}")
        return _Request(signed, account_id, account, account["jwk"])

    def route(
        handler: Callable[[Request, _Request], Awaitable[Response]], *, allow_jwk: bool = False, need_kid: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if request.headers.get("content-type", "").split(";")[0].strip() != "application/jose+json":
                    raise Problem("malformed", "Content-Type must be application/jose+json", status=415)
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    raise Problem("malformed", f"request bodies are limited to {MAX_BODY} bytes", status=413)
                url = base + request.url.path.lstrip("/")
                verified = await run_in_threadpool(verify, raw, url, allow_jwk=allow_jwk, need_kid=need_kid)
                return await handler(request, verified)
            except Problem as p:
                return await problem(p)
            except ShirushiError as exc:
                return await problem(from_error(exc))
            except Exception as exc:  # a problem document, never a traceback; the log keeps it
                log.exception("ACME %s %s failed", request.method, request.url.path)
                return await problem(Problem("serverInternal", type(exc).__name__, status=500))

        return endpoint

    async def directory(request: Request) -> Response:
        return await answer(
            {
                "newNonce": f"{base}acme/new-nonce",
                "newAccount": f"{base}acme/new-account",
                "newOrder": f"{base}acme/new-order",
                "revokeCert": f"{base}acme/revoke-cert",
                "keyChange": f"{base}acme/key-change",
                "renewalInfo": f"{base}acme/renewal-info/",
                "meta": {
                    "externalAccountRequired": settings.acme.eab_required,
                    "caaIdentities": list(settings.validation.caa_identities),
                    "website": settings.repository.url,
                },
            }
        )

    async def nonce(request: Request) -> Response:
        response = await answer(b"", 200 if request.method == "HEAD" else 204)
        return response

    async def new_account(request: Request, r: _Request) -> Response:
        url = f"{base}acme/new-account"
        account_id, data, created = await run_in_threadpool(
            accounts.new_account, objects, settings.acme, r.jwk, r.payload, url, now()
        )
        location = accounts.account_url(base, account_id)
        return await answer(
            accounts.account_json(data, base, account_id), 201 if created else 200, {"Location": location}
        )

    async def account(request: Request, r: _Request) -> Response:
        account_id = request.path_params["id"]
        if account_id != r.account_id:
            raise Problem("unauthorized", "a request for another account")
        assert r.account is not None
        data = await run_in_threadpool(accounts.update, objects, account_id, r.account, r.payload, now())
        return await answer(accounts.account_json(data, base, account_id))

    async def account_orders(request: Request, r: _Request) -> Response:
        if request.path_params["id"] != r.account_id:
            raise Problem("unauthorized", "a request for another account")
        assert r.account_id is not None
        owned = await run_in_threadpool(objects.owned, orders.ORDER, r.account_id)
        return await answer({"orders": [f"{base}acme/order/{oid}" for oid, _d in owned]})

    async def key_change(request: Request, r: _Request) -> Response:
        assert r.account_id is not None and r.account is not None
        url = f"{base}acme/key-change"
        data = await run_in_threadpool(
            accounts.key_change, objects, r.account_id, r.account, url, base, r.signed.payload_json, now()
        )
        return await answer(accounts.account_json(data, base, r.account_id))

    async def new_order(request: Request, r: _Request) -> Response:
        assert r.account_id is not None
        order_id, data = await run_in_threadpool(book.new_order, r.account_id, r.payload, now())
        return await answer(book.order_json(order_id, data), 201, {"Location": f"{base}acme/order/{order_id}"})

    async def order(request: Request, r: _Request) -> Response:
        assert r.account_id is not None
        order_id = request.path_params["id"]
        data = await run_in_threadpool(book.order, r.account_id, order_id, now())
        return await answer(book.order_json(order_id, data))

    async def finalize(request: Request, r: _Request) -> Response:
        assert r.account_id is not None and r.account is not None
        order_id = request.path_params["id"]
        data = await run_in_threadpool(book.finalize, r.account_id, r.account, order_id, r.signed.payload_json, now())
        return await answer(book.order_json(order_id, data), headers={"Location": f"{base}acme/order/{order_id}"})

    async def authz(request: Request, r: _Request) -> Response:
        assert r.account_id is not None
        authz_id = request.path_params["id"]
        if r.payload.get("status") == "deactivated":
            data = await run_in_threadpool(book.deactivate_authz, r.account_id, authz_id, now())
        else:
            data = await run_in_threadpool(book.authorization, authz_id, now(), r.account_id)
        return await answer(book.authz_json(authz_id, data))

    async def challenge(request: Request, r: _Request) -> Response:
        assert r.account_id is not None
        authz_id, index = request.path_params["authz"], request.path_params["index"]
        if r.signed.payload == b"":  # POST-as-GET: just the state
            data = await run_in_threadpool(book.authorization, authz_id, now(), r.account_id)
            if not 0 <= index < len(data["challenges"]):
                raise Problem("malformed", "no such challenge", status=404)
            chall = data["challenges"][index]
        else:
            data, chall = await run_in_threadpool(book.answer_challenge, r.account_id, r.jwk, authz_id, index, now())
        up = f'<{base}acme/authz/{authz_id}>;rel="up"'
        response = await answer(book.challenge_json(authz_id, index, chall))
        response.headers.append("Link", up)
        return response

    async def certificate(request: Request, r: _Request) -> Response:
        serial = request.path_params["serial"]
        if not all(c in "0123456789abcdef" for c in serial) or not 0 < len(serial) <= 40:
            raise Problem("malformed", "no such certificate", status=404)
        chain = await run_in_threadpool(book.certificate_chain, r.account_id, serial)
        return await answer(chain, media="application/pem-certificate-chain")

    async def revoke_cert(request: Request, r: _Request) -> Response:
        jwk = r.jwk if r.account_id is None else None
        await run_in_threadpool(revoke.revoke, backend, r.signed.payload_json, account_id=r.account_id, jwk=jwk)
        return await answer(b"", media="text/plain")

    async def renewal_info(request: Request) -> Response:
        try:
            # The directory's URL ends in "/"; a client that adds its own "/" (RFC 9773 4.1) is served too.
            aki, serial = ari.parse_id(request.path_params["id"].lstrip("/"))
            rec = await run_in_threadpool(backend.store.certificate, serial)
            issuing = backend.authority.hierarchy().issuing
            from cryptography import x509

            ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            if rec is None or aki != ski:
                raise Problem("malformed", "no such certificate", status=404)
            start, end = ari.window(rec.not_before, rec.not_after, rec.revoked_at)
            return await answer(
                {"suggestedWindow": {"start": orders.iso(start), "end": orders.iso(end)}},
                headers={"Retry-After": str(ari.RETRY_AFTER)},
            )
        except Problem as p:
            return await problem(p)

    async def not_found(request: Request, exc: Exception) -> Response:
        return await problem(Problem("malformed", f"no route {request.method} {request.url.path}", status=404))

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return await problem(Problem("malformed", f"{request.method} is not allowed here", status=405))

    return Starlette(
        routes=[
            Route("/directory", directory, methods=["GET"]),
            Route("/acme/new-nonce", nonce, methods=["GET", "HEAD"]),
            Route("/acme/new-account", route(new_account, allow_jwk=True, need_kid=False), methods=["POST"]),
            Route("/acme/acct/{id}", route(account), methods=["POST"]),
            Route("/acme/acct/{id}/orders", route(account_orders), methods=["POST"]),
            Route("/acme/key-change", route(key_change), methods=["POST"]),
            Route("/acme/new-order", route(new_order), methods=["POST"]),
            Route("/acme/order/{id}", route(order), methods=["POST"]),
            Route("/acme/order/{id}/finalize", route(finalize), methods=["POST"]),
            Route("/acme/authz/{id}", route(authz), methods=["POST"]),
            Route("/acme/chall/{authz}/{index:int}", route(challenge), methods=["POST"]),
            Route("/acme/cert/{serial}", route(certificate), methods=["POST"]),
            Route("/acme/revoke-cert", route(revoke_cert, allow_jwk=True, need_kid=False), methods=["POST"]),
            Route("/acme/renewal-info/{id:path}", renewal_info, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )
