"""Outside CAs: CAs whose key Shirushi does not hold (OpenSSL `ca`, easy-rsa, any CA with a CRL).

Shirushi serves their certificates' status with a delegated OCSP signer they certify
(RFC 6960 4.2.2.2): `registry.py` (issuer add, signer CSR and certificate), `index.py` (the
OpenSSL `ca` database format, pure), `crls.py` (their CRLs), `certs.py` (their certificates),
`importer.py` (applying what was read to the store), `follow.py` (`serve` following index files
and CRL URLs). Revocations of their certificates happen at that CA, never here.
"""
