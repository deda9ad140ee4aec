"""Benchmark CRL generation: time and peak memory, hand-encoded builder vs pyca's builder.

Each measurement runs in a fresh subprocess so that `ru_maxrss` (the peak resident set size)
belongs to that one run. A run makes a test CA with a 2048-bit RSA key and the software signer,
creates N revoked entries (random 16-octet serials, revocation times spread over 90 days, mixed
reasons), then times one call:

- `ours`:  `shirushi.crl.build_crl(...)` on the entries (selection timed separately);
- `pyca`:  `RevokedCertificateBuilder` per entry, all handed at once to the
           `CertificateRevocationListBuilder(revoked_certificates=[...])` constructor, `.sign`
           through the same software signer (the fastest way to use pyca's builder);
- `pyca-chained`: the same but one `.add_revoked_certificate()` call per entry, the documented
           idiom; each call copies the list of entries so far, so it is quadratic. Run once.

Both outputs are checked afterwards (parsed by pyca, entry count, signature) outside the timing.
Does I/O: spawns subprocesses, prints a Markdown table.

    .venv/bin/python bench/crl/bench_crl.py                 # ours 100k + 1M, pyca 100k (x3)
    .venv/bin/python bench/crl/bench_crl.py --repeat 5 --skip-chained
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time


def _run(kind: str, entries: int, seed: int) -> dict[str, float]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from shirushi.crl import Entry, Revocation, build_crl, select_entries
    from shirushi.signing import SignerKey
    from shirushi.signing.software import SoftwareSigner

    utc = dt.UTC
    now = dt.datetime(2026, 6, 1, 12, tzinfo=utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = SoftwareSigner(key, "bench")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shirushi Bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Shirushi Bench Issuing CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    issuer = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    rng = random.Random(seed)
    reasons = [
        "unspecified",
        "keyCompromise",
        "superseded",
        "cessationOfOperation",
        "affiliationChanged",
        "privilegeWithdrawn",
    ]
    serials: set[int] = set()
    while len(serials) < entries:
        serials.add(rng.getrandbits(127) | (1 << 126))
    revocations = [
        Revocation(
            serial,
            now - dt.timedelta(seconds=rng.randrange(90 * 86400)),
            rng.choice(reasons),
            now + dt.timedelta(days=rng.randrange(1, 200)),
        )
        for serial in serials
    ]
    del serials
    next_update = now + dt.timedelta(hours=96)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, float] = {}

    if kind == "ours":
        start = time.perf_counter()
        selection = select_entries(revocations, this_update=now, scheduled=True)
        result["select_s"] = time.perf_counter() - start
        start = time.perf_counter()
        der = build_crl(
            issuer=issuer, signer=signer, number=1, this_update=now, next_update=next_update, entries=selection.entries
        )
        result["build_s"] = time.perf_counter() - start
    else:
        plain = [Entry(r.serial, r.revoked_at, r.reason) for r in revocations]
        start = time.perf_counter()
        revoked_list = []
        for entry in plain:
            revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
            if entry.reason != "unspecified":
                revoked = revoked.add_extension(x509.CRLReason(x509.ReasonFlags(entry.reason)), critical=False)
            revoked_list.append(revoked.build())
        result["entries_s"] = time.perf_counter() - start
        extensions = [
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            ),
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1)),
        ]
        if kind == "pyca":
            builder = x509.CertificateRevocationListBuilder(issuer.subject, now, next_update, extensions, revoked_list)
        else:
            builder = x509.CertificateRevocationListBuilder(issuer.subject, now, next_update, extensions)
            for revoked_certificate in revoked_list:
                builder = builder.add_revoked_certificate(revoked_certificate)
        der = builder.sign(SignerKey(signer), hashes.SHA256()).public_bytes(Encoding.DER)
        result["build_s"] = time.perf_counter() - start

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == entries, (len(crl), entries)
    assert crl.is_signature_valid(key.public_key())
    result.update(
        bytes=len(der),
        baseline_mib=baseline_kib / 1024,
        peak_mib=peak_kib / 1024,
        build_extra_mib=(peak_kib - baseline_kib) / 1024,
    )
    return result


def _spawn(kind: str, entries: int, seed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(entries), str(seed)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def _machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}, {backend.openssl_version_text()}"
    )


def _load() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ENTRIES", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per case (median)")
    parser.add_argument(
        "--skip-chained", action="store_true", help="leave out the quadratic add_revoked_certificate() run (~30 s)"
    )
    args = parser.parse_args()
    if args.child:
        kind, entries, seed = args.child
        print(json.dumps(_run(kind, int(entries), int(seed))))
        return

    load_before = _load()
    cases = [("ours", 100_000), ("pyca", 100_000), ("ours", 1_000_000)]
    if not args.skip_chained:
        cases.append(("pyca-chained", 100_000))
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    for repeat in range(args.repeat):
        for kind, entries in cases:  # interleaved, so drift hits every case alike
            if kind == "pyca-chained" and repeat > 0:
                continue  # quadratic and slow; once is enough to show it
            rows.setdefault((kind, entries), []).append(_spawn(kind, entries, seed=repeat))

    def median(case: tuple[str, int], field: str) -> float:
        return statistics.median(r[field] for r in rows[case])

    def column(case: tuple[str, int], field: str) -> str:
        return f"{median(case, field):.2f}" if field in rows[case][0] else "-"

    print(f"Machine: {_machine()}")
    print(f"Load average before / after: {load_before} / {_load()}")
    print(f"Runs: up to {args.repeat} fresh processes per case; medians, (min-max) of build time.")
    print()
    print(
        "| builder | entries | runs | build s (min-max) | of which entry objects s | select s "
        "| CRL MiB | peak RSS MiB | RSS added by build MiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        builds = [r["build_s"] for r in rows[case]]
        print(
            f"| {case[0]} | {case[1]:,} | {len(builds)} | {median(case, 'build_s'):.2f} "
            f"({min(builds):.2f}-{max(builds):.2f}) | {column(case, 'entries_s')} | "
            f"{column(case, 'select_s')} | {median(case, 'bytes') / 2**20:.1f} | "
            f"{median(case, 'peak_mib'):.0f} | {median(case, 'build_extra_mib'):.0f} |"
        )
    ours = median(("ours", 100_000), "build_s")
    print()
    print(f"pyca / ours at 100,000 entries: {median(('pyca', 100_000), 'build_s') / ours:.1f}x")
    if not args.skip_chained:
        chained = median(("pyca-chained", 100_000), "build_s")
        print(f"pyca-chained / ours at 100,000 entries: {chained / ours:.0f}x")


if __name__ == "__main__":
    main()
