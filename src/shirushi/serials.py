"""How a serial number is written for people: CLI output, API JSON, log lines, messages. No I/O.

Serials are ints everywhere in the program; the store keeps its own encoding of them.
"""

from __future__ import annotations


def serial_text(serial: int, *, lower: bool = False) -> str:
    """Hex digits without leading zeros, upper case (`openssl x509 -serial` pads to whole octets;
    both forms are accepted as input).

    `lower` is for the error messages that have always spelled serials in lower case.
    """
    return format(serial, "x" if lower else "X")
