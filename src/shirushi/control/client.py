"""The CLI's side of the control socket (control/__init__.py): hand a request to a running `serve`.

Imports only the standard library, so that a forwarded command costs an interpreter start and a
round trip.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import NamedTuple

from shirushi.config import Settings
from shirushi.control import ANSWER_LIMIT, ANSWER_TIMEOUT
from shirushi.errors import ServiceError


def forward(settings: Settings, request: dict[str, object]) -> int | None:
    """Have the `serve` on this data directory run `request`, print its output; the exit code.

    None when no `serve` listens (no socket, or a stale one): the caller does the work itself.
    Once the request is sent, any failure is a ServiceError: `serve` may have done it already,
    so it is never done a second time here.
    """
    path = settings.layout.control_socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError:
            return None
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = _read_answer(sock)
        except TimeoutError:
            raise ServiceError(f"`serve` did not answer on {path} within {ANSWER_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise ServiceError(f"`serve` stopped answering on {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    sys.stdout.write(answer.stdout)
    sys.stderr.write(answer.stderr)
    return answer.exit


class Answer(NamedTuple):
    exit: int
    stdout: str
    stderr: str


def _read_answer(sock: socket.socket) -> Answer:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > ANSWER_LIMIT:
            raise ServiceError(f"`serve` answered with more than {ANSWER_LIMIT} bytes")
    try:
        answer = json.loads(data)
        if isinstance(answer["exit"], int) and isinstance(answer["stdout"], str) and isinstance(answer["stderr"], str):
            return Answer(answer["exit"], answer["stdout"], answer["stderr"])
    except (ValueError, KeyError, TypeError):
        pass
    raise ServiceError("`serve` stopped before it answered (see its log)")
