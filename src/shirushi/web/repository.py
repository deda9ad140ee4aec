"""The public repository (policy 2.1-2.4): CRLs, CA certificates, CP/CPS. Reads files per request.

CRLs are served at exactly the URLs written in the certificates' CRL Distribution Points, DER as
`application/pkix-crl` (RFC 5280 4.2.1.13, RFC 2585), with validators and a Cache-Control bounded
by nextUpdate; every shard of partitioned CRLs (`crl/shards.py`) under the same rules.
Publication is atomic (rename), so a request sees one whole CRL or another.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import html
import urllib.parse
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from shirushi.ca.hierarchy import ISSUING, ROOT, CertificatePaths
from shirushi.clock import Clock, SystemClock
from shirushi.config import Settings
from shirushi.crl.service import crl_path
from shirushi.crl.shards import crl_name, parse_crl_name

# Relying parties re-fetch at least hourly even when nextUpdate is days away, so a CRL published
# on revocation reaches them within the hour (CCADB asks for retrieval every 4 hours).
MAX_CRL_AGE = 3600
NAMES = (ISSUING, ROOT)


def _http_date(t: dt.datetime) -> str:
    return email.utils.format_datetime(t.astimezone(dt.UTC), usegmt=True)


def _not_found() -> Response:
    return Response("not found\n", status_code=404, media_type="text/plain")


def _conditional(request: Request, body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    headers = {**headers, "ETag": etag}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def index_page(base: str, crls: list[str], certificates: list[str], documents: list[str]) -> str:
    """A small HTML page linking what the repository serves, for people browsing to it."""

    def items(names: list[str]) -> str:
        if not names:
            return "<li>none published yet</li>"
        return "".join(f'<li><a href="{html.escape(base + n)}">{html.escape(n)}</a></li>' for n in names)

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Shirushi repository</title></head>'
        "<body><h1>Shirushi repository</h1>"
        f"<h2>CRLs (DER)</h2><ul>{items(crls)}</ul>"
        f"<h2>CA certificates (DER .crt, PEM .pem)</h2><ul>{items(certificates)}</ul>"
        f"<h2>Policy documents</h2><ul>{items(documents)}</ul>"
        "</body></html>\n"
    )


def _is_shard(file_name: str) -> bool:
    scope = parse_crl_name(file_name.removesuffix(".crl"))
    return scope is not None and scope[1] > 0 and crl_name(*scope) + ".crl" == file_name


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()
    certs = CertificatePaths(settings.data_path)
    documents = Path(settings.repository.documents) if settings.repository.documents else None

    async def crl(request: Request) -> Response:
        scope = parse_crl_name(request.path_params["name"])
        if scope is None or scope[0] not in NAMES or (scope[0] == ROOT and scope[1]):
            return _not_found()
        try:
            der = crl_path(settings, *scope).read_bytes()
            parsed = x509.load_der_x509_crl(der)
        except (FileNotFoundError, ValueError):
            return _not_found()
        next_update = parsed.next_update_utc
        max_age = MAX_CRL_AGE
        if next_update is not None:
            max_age = max(0, min(MAX_CRL_AGE, int((next_update - clock.now()).total_seconds())))
        headers = {
            "Last-Modified": _http_date(parsed.last_update_utc),
            "Cache-Control": f"public, max-age={max_age}, no-transform",
        }
        if next_update is not None:
            headers["Expires"] = _http_date(next_update)
        return _conditional(request, der, "application/pkix-crl", headers)

    async def certificate(request: Request) -> Response:
        name, ext = request.path_params["name"], request.path_params["ext"]
        cert = certs.load(name) if name in NAMES else None
        if cert is None or ext not in ("crt", "pem", "cer"):
            return _not_found()
        headers = {"Cache-Control": "public, max-age=86400"}
        if ext == "pem":
            return _conditional(
                request, cert.public_bytes(serialization.Encoding.PEM), "application/x-pem-file", headers
            )
        return _conditional(request, cert.public_bytes(serialization.Encoding.DER), "application/pkix-cert", headers)

    async def document(request: Request) -> Response:
        name = request.path_params["doc"]
        if name not in ("cp", "cps"):
            return _not_found()
        if documents is not None:
            try:
                body = (documents / f"{name}.txt").read_bytes()
            except OSError:
                return _not_found()
        else:
            body = resources.files("shirushi.templates").joinpath(f"{name}.txt").read_bytes()
        return _conditional(request, body, "text/plain; charset=utf-8", {"Cache-Control": "public, max-age=3600"})

    async def health(request: Request) -> Response:
        ok = all(crl_path(settings, n).exists() for n in NAMES)
        return Response("ok\n" if ok else "no CRL yet\n", status_code=200 if ok else 503, media_type="text/plain")

    # Serve at exactly the URLs written into certificates, also when repository.url has a path.
    prefix = urllib.parse.urlsplit(settings.repository.url).path.rstrip("/")

    async def index(request: Request) -> Response:
        crls = [f"{n}.crl" for n in NAMES if crl_path(settings, n).exists()]
        # Shards in numeric order after each issuer's full CRL.
        crls += sorted(
            (p.name for p in crl_path(settings, ISSUING).parent.glob(f"{ISSUING}-*.crl") if _is_shard(p.name)),
            key=lambda n: int(n[len(ISSUING) + 1 : -4]),
        )
        cas = [f"{n}.{ext}" for n in NAMES if certs.cert(n).exists() for ext in ("crt", "pem")]
        docs = ["cp", "cps"]
        if documents is not None:
            docs = [d for d in docs if (documents / f"{d}.txt").is_file()]
        body = index_page(prefix + "/", crls, cas, docs)
        return HTMLResponse(body, headers={"Cache-Control": "public, max-age=300"})

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/{name}.crl", crl, methods=["GET", "HEAD"]),
        Route("/{name}.{ext}", certificate, methods=["GET", "HEAD"]),
        Route("/{doc}", document, methods=["GET", "HEAD"]),
    ]
    if prefix:
        routes = [Mount(prefix, routes=routes)]
    return Starlette(routes=routes)
