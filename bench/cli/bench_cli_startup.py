"""CLI start-up: wall time of `shirushi issue` and `shirushi revoke` on an empty CA.

Each command runs as a user runs it (a fresh `python -m shirushi` process) against a CA made
by `shirushi init` in a temporary directory, with its own redis-server on a unix socket;
`shirushi --version` (the interpreter and argument parsing alone) is the floor, measured in the
same run. With `--reference SRC` the same commands also run from another checkout's `src`
(e.g. the main branch, as the "before"), each on a CA its own `init` made. Runs are interleaved; min and median
are shown. Target: issue and revoke < 0.5 s.

With `--serve` the same commands also run on a CA with `shirushi serve` running ("this tree,
serve running"), which they hand over its control socket (control/); the CPU that `serve` and
its children spent meanwhile is shown apart ("CPU in serve"), so nothing is hidden.

    .venv/bin/python bench/cli/bench_cli_startup.py [--runs 7] [--serve] [--reference /path/to/main/src]

Does I/O: temporary files, subprocesses.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def csr_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Chiyoda-ku"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example KK"),
            x509.NameAttribute(NameOID.COMMON_NAME, "www.example.jp"),
        ]
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.jp")]), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its descendants so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        each = todo.pop()
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            todo += [int(c) for c in Path(f"/proc/{each}/task/{each}/children").read_text().split()]
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed(args: list[str], env: dict[str, str], server: int | None = None) -> tuple[tuple[float, float, float], str]:
    """Run one command; ((wall s, CPU s of the command, CPU s of `server` meanwhile), stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = tree_cpu(server) if server is not None else 0.0
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "shirushi", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = tree_cpu(server) - served if server is not None else 0.0
    if result.returncode != 0:
        raise SystemExit(f"shirushi {args[0]} failed: {result.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return (elapsed, cpu, served), result.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`shirushi serve` on `env`'s CA, once its control socket listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shirushi", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    control = Path(env["SHIRUSHI_DATA_DIR"]) / "control.sock"
    deadline = time.monotonic() + 120
    while not control.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("shirushi serve did not start")
        time.sleep(0.1)
    time.sleep(2)  # let its start-up work (CRLs, presign of nothing) settle
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description="CLI start-up times")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reference", metavar="SRC", help="also run the commands from this source tree")
    parser.add_argument("--serve", action="store_true", help="also run them with `shirushi serve` running")
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed")
    trees: dict[str, str | None] = {"this tree": None}
    if args.serve:
        trees["this tree, serve running"] = None
    if args.reference:
        trees["reference"] = args.reference
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {
        (tree, cmd): [] for tree in trees for cmd in ("--version", "issue", "revoke")
    }
    with tempfile.TemporaryDirectory(prefix="shirushi-bench-cli-") as tmp:
        root = Path(tmp)
        sock = root / "redis.sock"
        redis = subprocess.Popen(
            [redis_server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        serving: subprocess.Popen[bytes] | None = None
        try:
            while not sock.exists():
                time.sleep(0.05)
            env = {k: v for k, v in os.environ.items() if not k.startswith("SHIRUSHI_")}
            env.update(SHIRUSHI_REDIS__URL=f"unix://{sock}")
            # A CA per tree, made by that tree's own `init` (the trees' schemas may differ).
            envs = {}
            for n, (tree, src) in enumerate(trees.items()):
                envs[tree] = {**env, "SHIRUSHI_DATA_DIR": str(root / f"data{n}")}
                if src is not None:
                    envs[tree]["PYTHONPATH"] = src
                timed(["init"], envs[tree])
            if args.serve:
                listen = ("OCSP", "REPOSITORY", "API", "METRICS")
                envs["this tree, serve running"].update(
                    {f"SHIRUSHI_{k}__LISTEN": f"127.0.0.1:{free_port()}" for k in listen}
                )
                serving = start_serve(envs["this tree, serve running"])
            (root / "req.pem").write_bytes(csr_pem())
            for _ in range(args.runs):
                for tree in trees:
                    run_env = envs[tree]
                    server = serving.pid if serving is not None and tree == "this tree, serve running" else None
                    times[tree, "--version"].append(timed(["--version"], run_env)[0])
                    elapsed, out = timed(["issue", "--csr", str(root / "req.pem")], run_env, server)
                    times[tree, "issue"].append(elapsed)
                    serial = format(x509.load_pem_x509_certificates(out.encode())[0].serial_number, "X")
                    times[tree, "revoke"].append(timed(["revoke", serial], run_env, server)[0])
        finally:
            if serving is not None:
                serving.terminate()
                serving.wait(60)
            redis.terminate()
            redis.wait(10)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.runs} runs each")
    print()
    # CPU time is the steadier figure on a shared machine: waiting for a core is not in it.
    print("| code | command | wall min s | wall median s | CPU min s | CPU median s | CPU in serve, median s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (tree, name), values in times.items():
        wall, cpu, served = [v[0] for v in values], [v[1] for v in values], [v[2] for v in values]
        in_serve = f"{statistics.median(served):.2f}" if "serve running" in tree and name != "--version" else "-"
        print(
            f"| {tree} | `shirushi {name}` | {min(wall):.2f} | {statistics.median(wall):.2f} | "
            f"{min(cpu):.2f} | {statistics.median(cpu):.2f} | {in_serve} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
