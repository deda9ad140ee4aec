"""CRL archive bytes per revocation at a million revoked entries spread over shards.

A CA holds ENTRIES revoked entries spread evenly over SHARDS shard CRLs, each shard's CRL
archived once (the start). Then REVOCATIONS revocations, each on a random shard, each followed
by that shard's CRL alone (no group commit: the worst case, one CRL per revocation), signed and
archived through the real `CrlArchive` (SQLite, one commit per CRL). Then one scheduled run
re-signs every shard unchanged. Reported: octets the archive stored per revocation CRL and per
unchanged scheduled CRL, next to the same CRLs' DER size (what a copy per CRL, the earlier file
archive, stores) and their zlib size (compressed, not content-addressed), measured on the same
CRLs in the same run. Every 50th archived CRL is read back and compared byte for byte.

    .venv/bin/python bench/crl/bench_archive.py                     # 1M entries, 64 shards, 1,000 revocations
    .venv/bin/python bench/crl/bench_archive.py --entries 100000 --shards 1 --revocations 100

Does I/O: a temporary SQLite database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shirushi.asn1.crl import encode_entry
from shirushi.crl.archive import CrlArchive
from shirushi.crl.build import sign_crl
from shirushi.crl.selection import Revocation
from shirushi.signing import SignerKey
from shirushi.signing.software import SoftwareSigner
from shirushi.store import schema
from shirushi.store.crl_archive import ArchiveIndex

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
ISSUER_ID = "bench"


def issuer() -> tuple[x509.Certificate, SoftwareSigner]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = SoftwareSigner(key, "bench-archive")
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(T0 - dt.timedelta(days=365))
        .not_valid_after(T0 + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(SignerKey(signer), hashes.SHA256())
    )
    return cert, signer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--revocations", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cert, signer = issuer()
    directory = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    engine = sa.create_engine(f"sqlite:///{directory / 'archive.db'}")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            schema.issuers.insert().values(
                id=ISSUER_ID, name="issuing-ca", subject="CN=CA", certificate=b"", created_at=T0
            )
        )
    archive = CrlArchive(ArchiveIndex(engine))
    shards = list(range(1, args.shards + 1)) if args.shards > 1 else [0]
    entries: dict[int, list[bytes]] = {s: [] for s in shards}
    numbers = dict.fromkeys(shards, 0)
    clock = [T0 - dt.timedelta(days=90)]

    def revoke(shard: int) -> None:
        clock[0] += dt.timedelta(seconds=rng.randint(1, 120))
        serial = rng.getrandbits(127) | 1 << 126
        entries[shard].append(encode_entry(Revocation(serial, clock[0], "superseded", T0 + dt.timedelta(days=90))))

    started = time.perf_counter()
    for i in range(args.entries):
        revoke(shards[i % len(shards)])
    seeded = time.perf_counter() - started

    def publish(shard: int, this_update: dt.datetime) -> tuple[int, int, int, bytes]:
        numbers[shard] += 1
        der = sign_crl(
            issuer=cert,
            signer=signer,
            number=numbers[shard],
            this_update=this_update,
            next_update=this_update + dt.timedelta(hours=96),
            revoked=b"".join(entries[shard]),
            distribution_point=f"http://crl.example.jp/issuing-ca-{shard}.crl",
        )
        done = archive.put(
            ISSUER_ID, shard, der, number=numbers[shard], this_update=this_update,
            next_update=this_update + dt.timedelta(hours=96), at=this_update,
        )  # fmt: skip
        return done.stored, len(der), len(zlib.compress(der, 6)), der

    def check(shard: int, der: bytes) -> None:
        if archive.load(ISSUER_ID, shard, numbers[shard]) != der:
            raise SystemExit(f"archived CRL {numbers[shard]} of shard {shard} did not come back")

    now = T0
    started = time.perf_counter()
    initial = [publish(s, now) for s in shards]
    initial_s = time.perf_counter() - started
    stored = raw = packed = 0
    started = time.perf_counter()
    for i in range(args.revocations):
        shard = rng.choice(shards)
        now += dt.timedelta(seconds=30)
        clock[0] = now - dt.timedelta(seconds=1)
        revoke(shard)
        s, r, p, der = publish(shard, now)
        stored, raw, packed = stored + s, raw + r, packed + p
        if i % 50 == 0:
            check(shard, der)
    revocations_s = time.perf_counter() - started
    now += dt.timedelta(hours=24)
    started = time.perf_counter()
    scheduled = [publish(s, now) for s in shards]
    scheduled_s = time.perf_counter() - started
    check(shards[-1], scheduled[-1][3])
    count, total = archive.index.totals(ISSUER_ID)
    n = max(args.revocations, 1)
    per_shard = args.entries / len(shards)
    print(f"entries {args.entries:,} over {len(shards)} shard(s) ({per_shard:,.0f} each); seeded in {seeded:.1f} s")
    print(
        f"initial archive: {len(shards)} CRLs, {sum(x[1] for x in initial) / 2**20:.1f} MiB DER, "
        f"stored {sum(x[0] for x in initial) / 2**20:.1f} MiB ({initial_s:.1f} s)"
    )
    print(
        f"per revocation CRL ({args.revocations:,}, {revocations_s / n * 1000:.0f} ms each): "
        f"DER {raw / n / 1024:.1f} KiB, zlib of DER {packed / n / 1024:.1f} KiB, stored {stored / n / 1024:.2f} KiB "
        f"(x{raw / max(stored, 1):.0f} less than a copy, x{packed / max(stored, 1):.0f} less than zlib)"
    )
    s_stored = sum(x[0] for x in scheduled) / len(shards)
    s_raw = sum(x[1] for x in scheduled) / len(shards)
    print(
        f"per unchanged scheduled CRL ({len(shards)}, {scheduled_s / len(shards) * 1000:.0f} ms each): "
        f"DER {s_raw / 1024:.1f} KiB, stored {s_stored / 1024:.2f} KiB"
    )
    size = os.path.getsize(directory / "archive.db") / 2**20
    print(f"archive: {count:,} CRLs, {total / 2**20:.1f} MiB stored; database file {size:.1f} MiB")
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
