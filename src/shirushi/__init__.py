"""Shirushi (印): a certificate authority built around a fast OCSP/CRL status core."""

import logging as _logging

__version__ = "0.1.0"

# Library logs stay silent unless a long-running command configures them (shirushi.logs).
_logging.getLogger("shirushi").addHandler(_logging.NullHandler())
