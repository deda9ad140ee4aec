"""Shirushi (印): a certificate authority built around a fast OCSP/CRL status core."""

__version__ = "0.1.0"
