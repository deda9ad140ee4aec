"""The ACME server (RFC 8555) with ACME Renewal Information (RFC 9773), on `acme.listen`.

`jws.py` verifies requests, `problems.py` holds the error documents, `accounts.py`, `orders.py`
and `revoke.py` are the use cases over the store, `ari.py` the renewal windows, `app.py` the
Starlette routes. Issuance goes through `Authority.issue(door="acme")`, the one issuance path.
"""
