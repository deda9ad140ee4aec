"""The control socket (control/): `issue` and `revoke SERIAL` from the CLI run in a running `serve`.

The wire, in process against the real socket server: one JSON line each way, anything else is
refused with a one-line error and an exit code, the socket is mode 0600. End to end with `serve`:
the CLI's output, messages and exit codes are those of the command run in process, the CLI
imports none of the CA's heavy modules, and a socket left by a killed `serve` is ignored.
"""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from shirushi.commands.ca import IssueRequest
from shirushi.commands.revoke import RevokeRequest
from shirushi.control import REQUEST_LIMIT
from shirushi.control import server as control_server
from shirushi.errors import InputError, PolicyError
from shirushi.layout import Layout
from support.pki import make_csr
from support.serving import Site

# --- the wire, in process ---------------------------------------------------------------------


def exchange(tmp_path: Path, payload: bytes, *, close_write: bool = False) -> dict[str, object]:
    """Start a ControlServer on `tmp_path`, send `payload`, return its answer."""

    async def run() -> dict[str, object]:
        backend = types.SimpleNamespace(settings=types.SimpleNamespace(layout=Layout(tmp_path)))
        control = control_server.ControlServer(backend)  # type: ignore[arg-type]
        await control.start()
        try:
            mode = stat.S_IMODE(Layout(tmp_path).control_socket.stat().st_mode)
            assert mode == 0o600, oct(mode)
            reader, writer = await asyncio.open_unix_connection(str(Layout(tmp_path).control_socket))
            writer.write(payload)
            if close_write:
                writer.write_eof()
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            return dict(json.loads(line))
        finally:
            await control.close()
        assert not Layout(tmp_path).control_socket.exists()

    return asyncio.run(run())


def test_a_stale_socket_file_is_replaced_and_removed_at_close(tmp_path: Path) -> None:
    Layout(tmp_path).control_socket.write_text("left by a killed serve")
    answer = exchange(tmp_path, b'{"command": "nothing"}\n')
    assert answer == {"exit": 2, "stdout": "", "stderr": "shirushi: error: control socket: unknown command 'nothing'\n"}
    assert not Layout(tmp_path).control_socket.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json\n", "control socket: the request is not JSON"),
        (b"\xff\xfe\n", "control socket: the request is not JSON"),
        (b"[1, 2]\n", "control socket: a request is a JSON object"),
        (b'{"command": "issue", "csr": 5}\n', "issue: csr must be base64 text"),
        (b'{"command": "issue", "csr": "!!"}\n', "issue: csr must be base64 text"),
        (b'{"command": "issue", "csr": "", "days": "9"}\n', "issue: days must be a whole number"),
        (b'{"command": "revoke", "serial": "zz", "reason": "superseded"}\n', "serial 'zz' is not hexadecimal"),
        (b'{"command": "revoke", "serial": 1, "reason": "superseded"}\n', "revoke: serial and reason must be text"),
        (b'{"command": "revoke"', "control socket: the request line was cut off"),
    ],
)
def test_bad_requests_get_one_line_and_an_exit_code(tmp_path: Path, payload: bytes, message: str) -> None:
    answer = exchange(tmp_path, payload, close_write=True)
    assert answer["exit"] in (2, 3, 4) and answer["stdout"] == ""
    stderr = str(answer["stderr"])
    assert stderr.startswith(f"shirushi: error: {message}") and stderr.count("\n") == 1, stderr


def test_an_oversized_or_silent_request_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = exchange(tmp_path, b"x" * (REQUEST_LIMIT + 10) + b"\n")
    assert "no request line within" in str(answer["stderr"]) and answer["exit"] == 2
    monkeypatch.setattr(control_server, "REQUEST_TIMEOUT", 0.2)
    answer = exchange(tmp_path, b'{"command": ')  # and then nothing, the connection kept open
    assert "no request line within" in str(answer["stderr"])


def test_requests_survive_the_wire() -> None:
    issue = IssueRequest(b"\x30\x03\x02\x01\x01", ["a.example.jp"], 90, "C=JP, O=Example")
    assert IssueRequest.from_json(json.loads(json.dumps(issue.to_json()))) == issue
    revoke = RevokeRequest(0x1234, "keyCompromise", None)
    assert RevokeRequest.from_json(json.loads(json.dumps(revoke.to_json()))) == revoke
    with pytest.raises(InputError):
        IssueRequest.from_json({"csr": "AA==", "dns": "a.example.jp"})


# --- end to end, with `serve` -----------------------------------------------------------------

# The CLI as a user runs it, then which of the CA's heavy modules it imported (on stderr's last line).
CLI = """
import sys
from shirushi.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("sqlalchemy", "redis", "pkilint", "cryptography") if m in sys.modules)
print("imported:", ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def cli(site: Site, *args: str) -> tuple[int, str, str, str]:
    """(exit code, stdout, stderr without the last line, the heavy modules imported)."""
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=site.env, capture_output=True, text=True, timeout=180)
    *lines, imported = done.stderr.splitlines()
    return done.returncode, done.stdout, "\n".join(lines), imported.removeprefix("imported: ")


@pytest.mark.e2e
def test_the_cli_hands_issue_and_revoke_to_serve(tmp_path: Path) -> None:
    site = Site(tmp_path)
    assert site.cli("init").returncode == 0
    good = tmp_path / "good.pem"
    good.write_bytes(make_csr(["control.example.jp"]))
    no_org = tmp_path / "no-org.pem"
    no_org.write_bytes(make_csr(["control.example.jp"], subject={"C": "JP"}))
    refusals = [("revoke", "01"), ("issue", "--csr", str(no_org)), ("revoke", "01", "--reason", "nonsense")]

    with site.serving():
        code, out, err, imported = cli(site, "issue", "--csr", str(good))
        assert (code, err, imported) == (0, "", ""), err
        assert out.count("-----BEGIN CERTIFICATE-----") == 2  # the certificate, then its issuer
        serial = (
            subprocess.run(
                ["openssl", "x509", "-noout", "-serial"], input=out, capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .removeprefix("serial=")
        )
        code, out, err, imported = cli(site, "revoke", serial, "--reason", "superseded")
        assert (code, err, imported) == (0, "", ""), err
        # openssl pads the serial to whole octets; the CLI prints it without leading zeros
        assert out.startswith(f"revoked {int(serial, 16):X} reason=superseded at=")
        through_serve = [cli(site, *args)[:3] for args in refusals]
        for line in ("control command=issue exit=0", "control command=revoke exit=0", "control command=revoke exit=4"):
            assert line in site.log(), site.log()[-2000:]

    in_process = [cli(site, *args)[:3] for args in refusals]  # no serve: the CLI does it itself
    assert through_serve == in_process
    assert [c for c, _, _ in in_process] == [4, PolicyError.exit_code, PolicyError.exit_code]

    # A socket left behind by a killed serve: the CLI does the work itself, at once.
    site.start()
    assert site.stop(signal.SIGKILL) == -signal.SIGKILL
    assert site.data.joinpath("control.sock").exists()
    code, _, err, imported = cli(site, "revoke", "01")
    assert code == 4 and "no certificate with serial 1" in err and "sqlalchemy" in imported
