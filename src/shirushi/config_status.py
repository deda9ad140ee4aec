"""The status core's settings sections: `[redis]`, `[ocsp]` and `[crl]` (loaded by config.py).

Pure: the sections are frozen dataclasses with their defaults and their `validate()`; reading
the file and the environment is config.py's job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from shirushi.config_values import parse_listen
from shirushi.errors import ConfigError
from shirushi.layout import Layout

# Same names as shirushi.signing.KEY_TYPES (config does not import the signing seam).
OCSP_SIGNER_KEY_TYPES = ("rsa-2048", "ecdsa-p256")


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    url: str = ""
    # Seconds to wait for Redis before giving up on a single command.
    timeout: float = 2.0
    # "single": one server at `url`; "sentinel": the primary named `sentinel_service`, found
    # through the sentinels in `nodes`; "cluster": a Redis Cluster reached through the seed `nodes`.
    mode: str = "single"
    nodes: tuple[str, ...] = ()
    sentinel_service: str = "shirushi"
    # Responders may read from replicas (sentinel / cluster); writers always use the primary.
    read_replicas: bool = False

    def validate(self) -> None:
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis.url must start with redis://, rediss:// or unix:// (or be empty)")
        if not 0 < self.timeout <= 60:
            raise ConfigError("redis.timeout must be between 0 and 60 seconds")
        if self.mode not in ("single", "sentinel", "cluster"):
            raise ConfigError('redis.mode must be "single", "sentinel" or "cluster"')
        if self.mode != "single":
            if not self.nodes:
                raise ConfigError(f'redis.mode = "{self.mode}" needs redis.nodes (["host:port", ...])')
            for node in self.nodes:
                try:
                    parse_listen(node)
                except ValueError as exc:
                    raise ConfigError(f"redis.nodes: {exc}") from None
            if not self.sentinel_service:
                raise ConfigError("redis.sentinel_service must not be empty")

    @property
    def node_addresses(self) -> list[tuple[str, int]]:
        """`nodes` as (host, port) pairs: sentinels or cluster seed nodes."""
        return [parse_listen(node) for node in self.nodes]


@dataclasses.dataclass(frozen=True)
class OCSPSettings:
    listen: str = "127.0.0.1:8080"
    url: str = "http://127.0.0.1:8080/"
    # Responder worker processes started by `serve` (they hold no keys).
    workers: int = 1
    # Upper bound of Cache-Control max-age on GET answers (RFC 9919 7.1).
    max_age: dt.timedelta = dt.timedelta(hours=1)
    # Largest POST body or GET path accepted, in bytes (RFC 9919 8.4).
    max_request_bytes: int = 8192
    # PEM bundle of the issuing CA certificates the responder answers for; "" means
    # {data_dir}/certs/issuers.pem, which `init` writes.
    issuers: str = ""
    # File the responder workers append one line per answered request to (policy 5.5.1: OCSP
    # access logs are archived); "" = no access log. Reopened when moved away or on SIGHUP.
    access_log: str = ""
    # Per worker: MiB of answers kept in process memory (bounded by bytes; each costs its DER
    # plus about 1.3 KB), valid only while the invalidation subscription lives; 0 = every answer
    # from Redis. 384 holds about 145,000 answers of an RSA-2048 signer.
    cache_mb: int = 384

    # The backend's live-signing service, asked when Redis has no record for a request (a cold
    # start, a flushed or replaced Redis, an evicted key): its unix socket ("" means
    # {data_dir}/live.sock), the signatures per second it may make (0 = no live signing), and how
    # long a responder waits for its answer before answering tryLater.
    live_socket: str = ""
    live_rate: float = 500.0
    live_timeout: float = 1.0
    # Key type of the delegated OCSP signer (certified by the RSA issuing CA; BR 7.1.3.2,
    # RFC 6960 4.2.2.2): "rsa-2048" (the policy's profile) or "ecdsa-p256" (about ten times
    # the signatures per core, responses a third smaller). Changing it makes `init` (and
    # `serve` at start) create and certify a signer key of the new type.
    signer_key: str = "rsa-2048"

    def live_socket_path(self, data_dir: Path) -> Path:
        return Path(self.live_socket).expanduser() if self.live_socket else Layout(data_dir).live_socket

    def validate(self) -> None:
        parse_listen(self.listen)
        if not 0 <= self.cache_mb <= 1 << 16:
            raise ConfigError("ocsp.cache_mb must be between 0 and 65536")
        if not 0 <= self.live_rate <= 100_000:
            raise ConfigError("ocsp.live_rate must be between 0 and 100000 signatures per second")
        if not 0 < self.live_timeout <= 30:
            raise ConfigError("ocsp.live_timeout must be between 0 and 30 seconds")
        if len(str(self.live_socket).encode()) > 100:
            raise ConfigError("ocsp.live_socket must be at most 100 bytes long (a unix socket path)")
        if self.signer_key not in OCSP_SIGNER_KEY_TYPES:
            raise ConfigError(f"ocsp.signer_key must be one of {', '.join(OCSP_SIGNER_KEY_TYPES)}")
        if not 1 <= self.workers <= 64:
            raise ConfigError("ocsp.workers must be between 1 and 64")
        if not 512 <= self.max_request_bytes <= 1 << 20:
            raise ConfigError("ocsp.max_request_bytes must be between 512 and 1048576")


# Upper bound of `crl.shards`: a million revocations over 1024 shards is about 44 KiB a shard;
# more would only multiply the CRLs made on schedule.
MAX_CRL_SHARDS = 1024


@dataclasses.dataclass(frozen=True)
class CRLSettings:
    interval: dt.timedelta = dt.timedelta(hours=24)
    validity: dt.timedelta = dt.timedelta(hours=96)
    # Partitioned CRLs (crl/shards.py): 1 = one full CRL per issuer; N > 1 = each new
    # certificate's CRL Distribution Point names one of N shards, chosen by its serial.
    shards: int = 1
    # Policy 5.5.2: archived CRLs are kept this long after their nextUpdate, then pruned
    # (crl/archive.py), except each shard's newest.
    archive_retention_years: int = 7

    def validate(self) -> None:
        if not 1 <= self.shards <= MAX_CRL_SHARDS:
            raise ConfigError(f"crl.shards must be between 1 and {MAX_CRL_SHARDS}")
        if not 1 <= self.archive_retention_years <= 100:
            raise ConfigError("crl.archive_retention_years must be between 1 and 100")
        if self.validity > dt.timedelta(days=10):
            raise ConfigError("crl.validity must be at most 10 days (BR 4.9.7)")
        if self.interval >= self.validity:
            raise ConfigError("crl.interval must be shorter than crl.validity")
