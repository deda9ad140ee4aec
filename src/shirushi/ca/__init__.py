"""Certificate issuance: CSR checks, profiles (policy tables 7.1-1 and 7.1-2), validity, linting."""
