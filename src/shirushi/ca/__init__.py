"""Certificate issuance: CSR checks, profiles (policy tables 7.1-1 and 7.1-2), validity, linting."""

# The largest CSR read from a file, a request body or the control socket (a 4096-bit RSA CSR
# with many names is a few KiB). Here, not in csr.py, so that the CLI can bound its read
# without importing cryptography.
MAX_CSR_BYTES = 64 * 1024
