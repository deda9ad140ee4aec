"""`serve`'s side of the control socket (control/__init__.py): run the CLI's `issue` and `revoke`.

Each connection carries one request line and gets one answer line: the command's stdout, its
stderr and its exit code, made by the same functions the CLI runs in process and worded by the
CLI's one error mapping (`cli.failed`). The work runs in a thread, like the API's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from shirushi.control import REQUEST_LIMIT, REQUEST_TIMEOUT
from shirushi.errors import InputError, ShirushiError

if TYPE_CHECKING:
    from shirushi.backend import Backend

log = logging.getLogger("shirushi.control")

# A command's run: writes its output to (stdout, stderr) and returns its exit code.
Command = Callable[[TextIO, TextIO], int]


class ControlServer:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.path: Path = backend.settings.layout.control_socket
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on the socket, mode 0600. `serve` holds the data directory's lock, so a
        socket file left there is a stale one of a killed `serve`."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            # Before listen(): until then nobody can connect, whatever the mode was at bind
            # (changing the umask instead would also change it for other threads' files).
            os.chmod(self.path, 0o600)
        except OSError as exc:
            sock.close()
            # The CLI then does its commands itself, as without a `serve`: slower, not wrong.
            log.warning("control socket unavailable", extra={"socket": str(self.path), "error": str(exc)})
            return
        self.server = await asyncio.start_unix_server(self._handle, sock=sock, limit=REQUEST_LIMIT)
        log.info("startup", extra={"step": "control socket", "socket": str(self.path)})

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._respond(reader)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except OSError:
            pass  # the CLI went away (Ctrl-C); what it asked for is done or refused either way
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> dict[str, object]:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        except (TimeoutError, ValueError):  # ValueError: over the limit
            refusal = f"control socket: no request line within {REQUEST_LIMIT} bytes and {REQUEST_TIMEOUT:.0f} s"
            return _answer("control", _refused(InputError(refusal)))
        try:
            run, command = self._parse(line)
        except InputError as exc:
            return _answer("control", _refused(exc))
        except ValueError:  # not JSON, not UTF-8
            return _answer("control", _refused(InputError("control socket: the request is not JSON")))
        return await asyncio.to_thread(_answer, command, run)

    def _parse(self, line: bytes) -> tuple[Command, str]:
        from shirushi.commands.ca import IssueRequest, issue_with
        from shirushi.commands.revoke import RevokeRequest, revoke_with

        if not line.endswith(b"\n"):
            raise InputError("control socket: the request line was cut off")
        data = json.loads(line)
        if not isinstance(data, dict):
            raise InputError("control socket: a request is a JSON object")
        command = data.get("command")
        if command == "issue":
            issue = IssueRequest.from_json(data)
            return (lambda out, err: issue_with(self.backend, issue, out, err)), "issue"
        if command == "revoke":
            revoke = RevokeRequest.from_json(data)
            return (lambda out, err: revoke_with(self.backend, revoke, out, err)), "revoke"
        raise InputError(f"control socket: unknown command {command!r}")


def _answer(command: str, run: Command) -> dict[str, object]:
    """Run a command with its output captured; the answer line's object."""
    from shirushi.cli import failed

    out, err = io.StringIO(), io.StringIO()
    try:
        code = run(out, err)
    except Exception as exc:
        if not isinstance(exc, ShirushiError):
            log.exception("control: %s failed", command)
        code = failed(exc, command, err)
    log.info("control", extra={"command": command, "exit": code})
    return {"exit": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _refused(exc: InputError) -> Command:
    """A request refused before any command ran, answered like any other failure."""

    def run(out: TextIO, err: TextIO) -> int:
        raise exc

    return run
