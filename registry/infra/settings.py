"""Settings: one object, in sections, read once from the environment (docs/design.md#configuration).

``Settings.from_env()`` is the only place the process's environment is read for
configuration. Variable names follow from the field names: ``REGISTRY_<FIELD>`` for the
shared settings, ``REGISTRY_DECIDER_<FIELD>``, ``REGISTRY_PROJECTOR_<FIELD>``,
``REGISTRY_PREDICTOR_<FIELD>`` and ``REGISTRY_MONITOR_<FIELD>`` for the sections, and
``KAFKA_<FIELD>`` for the connection. A handful of earlier names are still read, with a
warning (``aliases``); the README lists every variable.

A value that does not parse is refused with ``SettingsError`` naming the variable; a secret
(``KAFKA_SASL_PASSWORD``) never appears in ``repr``.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from registry.core.errors import RegistryError

__all__ = [
    "ApiSettings",
    "AuthSettings",
    "DeciderSettings",
    "GrantSettings",
    "LimitSettings",
    "KafkaConnection",
    "MonitorSettings",
    "PredictorSettings",
    "ProjectorSettings",
    "Settings",
    "SettingsError",
]

log = logging.getLogger(__name__)


class SettingsError(RegistryError, ValueError):
    """A setting whose value cannot be used; the message names the variable."""

    code = "SettingsError"


def _env(name: str, *aliases: str) -> dict[str, Any]:
    """Field metadata: the variable's full name (instead of prefix + field), and old names."""
    return {"env": name, "aliases": aliases}


@dataclass(frozen=True)
class KafkaConnection:
    """How every Kafka client connects to a production cluster (``KAFKA_*``)."""

    ENV: ClassVar[str] = "KAFKA_"

    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments these settings add to every aiokafka client."""
        out: dict[str, Any] = {}
        if self.security_protocol:
            out["security_protocol"] = self.security_protocol
        if self.sasl_mechanism:
            out["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            out["sasl_plain_username"] = self.sasl_username
        if self.sasl_password:
            out["sasl_plain_password"] = self.sasl_password
        if self.ssl_cafile:
            import ssl  # here, not at the top: CLI start-up does not pay for it (bench/cli.py)

            out["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return out


@dataclass(frozen=True)
class DeciderSettings:
    """The decider (``REGISTRY_DECIDER_*``)."""

    ENV: ClassVar[str] = "REGISTRY_DECIDER_"

    allow_clear: bool = field(default=False, metadata={"aliases": ("REGISTRY_ALLOW_CLEAR",)})
    """Accept ``ClearRegistry`` (tests only)."""
    transactional: bool = field(default=False, metadata={"aliases": ("REGISTRY_TRANSACTIONAL",)})
    """Transactional producer on a real Kafka (fences a zombie decider)."""
    batch_size: int = 1000
    """Commands read per batch."""
    crash_after_append: bool = field(
        default=False, metadata={"aliases": ("REGISTRY_TEST_CRASH_AFTER_APPEND",)}
    )
    """Fault injection for tests: exit right after appending events, before reply and commit."""


@dataclass(frozen=True)
class ProjectorSettings:
    """The projector (``REGISTRY_PROJECTOR_*``)."""

    ENV: ClassVar[str] = "REGISTRY_PROJECTOR_"

    max_records: int = 20000
    """Records per batch (one SQLite transaction)."""


@dataclass(frozen=True)
class PredictorSettings:
    """How the prediction consumer batches, caches, dedupes, calls providers and falls back
    (``REGISTRY_PREDICTOR_*``; the earlier ``PREDICTOR_*`` names are still read).

    Backpressure: at most ``max_batch`` requests are handled at a time and at most
    ``max_in_flight`` handled batches wait for their acknowledgements and commit; beyond
    that the loop stops fetching. Memory is bounded by those two numbers.
    """

    ENV: ClassVar[str] = "REGISTRY_PREDICTOR_"
    LEGACY_ENV: ClassVar[str] = "PREDICTOR_"

    group_id: str = "predictor"  # the topic prefix is put in front of it
    # "group": partitions shared by the members of the consumer group (scale out);
    # "all": this instance reads every partition, committing to the same group id (one
    # instance; starts at once, resumes at once after a crash). None: the process decides
    # (``up`` reads all, ``model-registry predictor`` joins the group).
    assignment: str | None = None
    max_batch: int = 4000
    max_in_flight: int = 2  # handled batches waiting for acks/commit while the next is handled
    poll_timeout_ms: int = 100
    cache_ttl_s: float = 300.0
    cache_max_entries: int = 100_000
    dedupe_max_ids: int = 200_000
    mock_fallback: bool = False
    provider_timeout_s: float = 10.0
    provider_retries: int = 2
    provider_backoff_s: float = 0.05
    provider_concurrency: int = 32
    breaker_threshold: int = 20
    breaker_cooldown_s: float = 5.0
    unknown_model_wait_s: float = 1.0
    session_timeout_ms: int = 10_000
    warm_up_timeout_s: float = 30.0
    tune_gc: bool = True
    # Bulkheads (consumers.predictor.lanes): each model's queue (None: max_batch), its
    # concurrent provider calls, how long a full lane may hold the fetch loop before its
    # extra requests are answered "overloaded", and the wait for work in hand at shutdown.
    lane_capacity: int | None = None
    lane_groups: int = 4
    lane_max_wait_s: float = 0.5
    drain_timeout_s: float = 10.0
    # Latency (docs/predictions.md#latency): the fetch wait of the requests consumer (None:
    # the shared REGISTRY_FETCH_MAX_WAIT_MS, capped on the embedded broker), the linger of
    # the results producer (None: the broker's default, ``traits.BrokerTraits``), and how
    # costly a model's prediction must be, per request, for the result cache to be used
    # for it (the cache's hashing costs a few microseconds a request; a local model
    # predicting a batch answers faster than that).
    fetch_max_wait_ms: int | None = None
    result_linger_ms: int | None = None
    cache_min_item_us: float = 20.0

    def __post_init__(self) -> None:
        if self.assignment not in {None, "group", "all"}:
            raise SettingsError(
                f"the predictor's assignment must be 'group' or 'all', not {self.assignment!r}"
            )
        if self.max_batch < 1 or self.max_in_flight < 1:
            raise SettingsError("the predictor's max_batch and max_in_flight must be at least 1")

    def with_(self, **changes: Any) -> PredictorSettings:
        """A copy with ``changes`` applied (checked again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class MonitorSettings:
    """The monitor (``REGISTRY_MONITOR_*``): how much it reads per transaction, how long the
    join window stays open, and where its metrics are served.

    ``join_window_s`` bounds how long a result waits (and is deduplicated) for its outcome;
    ``outcome_ttl_s`` how long an outcome waits for its result before it is dropped and
    counted as expired. Both bound the database's size under any traffic.
    """

    ENV: ClassVar[str] = "REGISTRY_MONITOR_"

    max_records: int = 5000
    poll_timeout_ms: int = 200
    catch_up_poll_ms: int = 50
    outcome_ttl_s: float = 7 * 86400.0
    join_window_s: float = 3 * 86400.0
    expire_every_s: float = 60.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9466
    guard_interval_s: float = 2.0
    """How often the guard (``model_registry.guard``) checks running tests' guardrails."""


@dataclass(frozen=True)
class GrantSettings:
    """What the operator grants the prediction consumer's providers (``REGISTRY_GRANTS_*``).

    A model's configuration names code, files, credentials and hosts; it gets only what is
    granted here (docs/security-providers.md). Lists are comma-separated in the environment.
    Nothing is granted by default but the ``MODEL_SECRET_`` variables, each provider's own
    vendor hosts, the installed ``model_registry.callables`` entry points and, for the
    prediction consumer, ``<data_dir>/models`` as a model root.
    """

    ENV: ClassVar[str] = "REGISTRY_GRANTS_"

    callables: tuple[str, ...] = ()
    """Exact ``module:function`` targets a ``custom`` model may name, besides the entry
    points installed in the ``model_registry.callables`` group. Nothing else is imported."""
    model_roots: tuple[Path, ...] = ()
    """Directories model files may be loaded from (resolved; no escape by ``..`` or links).
    The prediction consumer adds ``<data_dir>/models``; a model file must also match the
    ``providerConfig.modelSha256`` its model pins."""
    allow_pickle: bool = False
    """Let scikit-learn load pickle/joblib files and PyTorch load TorchScript archives (both
    run code from the file; digest-pinned only). Off: skops and weights-only state dicts."""
    env_prefixes: tuple[str, ...] = ("MODEL_SECRET_",)
    """Environment variables an ``env:NAME`` credential may name: those with these prefixes."""
    secrets_dir: Path | None = None
    """Files a ``file:`` credential may name: those under this directory (none when unset)."""
    hosts: tuple[str, ...] = ()
    """Hosts HTTP providers may call besides each provider's own defaults (``host``,
    ``host:port``, ``*.domain``, an IP address, ``[v6]:port``). Listing a loopback or private
    address grants that address; a name that resolves to one is refused all the same."""
    allow_private_hosts: bool = False
    """Let allowed hosts resolve to loopback, private, link-local or other non-public
    addresses (off: only the addresses listed in ``hosts``)."""


@dataclass(frozen=True)
class AuthSettings:
    """Who may write what (``REGISTRY_AUTH_*``; docs/security.md).

    ``actors_file`` is the operator's list of actors (name, public key, roles) the decider
    verifies every command against; ``identity_file`` is the key this process signs its
    commands with. Both default to files in the data dir, which ``up`` creates.
    """

    ENV: ClassVar[str] = "REGISTRY_AUTH_"

    actors_file: Path | None = None
    """Defaults to ``<data_dir>/actors.json``."""
    identity_file: Path | None = None
    """Defaults to ``<data_dir>/identity.json``."""
    monitor_identity_file: Path | None = None
    """The key the guard signs its commands with, as the actor ``monitor`` (defaults to
    ``<data_dir>/monitor.identity.json``; ``up`` creates it and names it deployer in the
    actors file it creates)."""
    four_eyes: bool = False
    """Activation needs an actor other than the one who registered or released the version."""


@dataclass(frozen=True)
class LimitSettings:
    """Bounds at the edge (``REGISTRY_LIMITS_*``): a record over a limit is refused with a
    typed reason before it is decoded (docs/security.md#bounds-at-the-edge).

    ``registry.events`` has none on purpose: only the decider writes it, from bounded
    commands, and a reader must never refuse history by a limit set later; a stray record
    of any size or depth is caught by the fold as unreadable."""

    ENV: ClassVar[str] = "REGISTRY_LIMITS_"

    command_bytes: int = 256 * 1024
    request_bytes: int = 256 * 1024
    outcome_bytes: int = 64 * 1024
    json_depth: int = 32
    """Deepest nesting of objects and arrays accepted in any input."""
    dlq_excerpt_bytes: int = 64 * 1024
    """A dead letter larger than this is written as a reference with an excerpt this long."""


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API and web console (``REGISTRY_API_*``; docs/api.md).

    It binds to loopback unless ``host`` says otherwise (``model-registry api`` also needs
    ``--allow-remote`` for that). ``port`` 0 takes any free port. Bearer tokens are kept
    hashed in ``tokens_file``; the service signs the commands it sends with its own gateway
    key (``identity_file``, actor ``api``) in the authenticated actor's name.
    """

    ENV: ClassVar[str] = "REGISTRY_API_"

    host: str = "127.0.0.1"
    port: int = 8765
    anonymous_reads: bool = False
    """Let requests without a token read (never write). Off unless the operator turns it on."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (413 above)."""
    command_timeout_s: float = 10.0
    """How long a write waits for the decider's reply (504 after)."""
    read_wait_s: float = 10.0
    """How long a read waits for the projection to apply the caller's own writes."""
    predict_timeout_s: float = 10.0
    """How long ``POST /predict`` waits for the result by default (504 after)."""
    tokens_file: Path | None = None
    """Defaults to ``<data_dir>/api-tokens.json``."""
    identity_file: Path | None = None
    """The gateway's signing key; defaults to ``<data_dir>/api.identity.json``."""


@dataclass(frozen=True)
class Settings:
    """Where the broker is, how topics are named, and each component's section.

    ``bootstrap_servers`` empty means "start the embedded broker" for ``up``; library code
    always gets a concrete address.
    """

    ENV: ClassVar[str] = "REGISTRY_"

    bootstrap_servers: str = field(default="", metadata=_env("KAFKA_BOOTSTRAP_SERVERS"))
    topic_prefix: str = ""
    client_id: str = "model-registry"
    data_dir: Path = Path(".model-registry")
    # A fetch on the embedded broker waits its full max wait even when data arrives: keep it
    # small there for the request/reply path (docs/design.md#brokers). from_env makes it 500
    # when a real Kafka is named.
    fetch_max_wait_ms: int = 10
    prediction_partitions: int = 6
    replication_factor: int = 1
    log_level: str = "warning"
    json_logs: bool = False
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    decider: DeciderSettings = field(default_factory=DeciderSettings)
    projector: ProjectorSettings = field(default_factory=ProjectorSettings)
    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    grants: GrantSettings = field(default_factory=GrantSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    debug: bool = False
    """Show the Python traceback of an unexpected error (a CLI command's, a crash of a
    component under ``up``) besides the one-sentence explanation (``REGISTRY_DEBUG``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment (``os.environ`` unless given), then ``overrides``.

        Raises:
            SettingsError: a variable holds a value its setting cannot take.
        """
        env = os.environ if environ is None else environ
        values = _read(cls, env)
        if "fetch_max_wait_ms" not in values and values.get("bootstrap_servers"):
            values["fetch_max_wait_ms"] = 500  # a real Kafka wakes a waiting fetch early
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @property
    def actors_file(self) -> Path:
        """The operator's actors file (``REGISTRY_AUTH_ACTORS_FILE`` or in the data dir)."""
        return self.auth.actors_file or self.data_dir / "actors.json"

    @property
    def identity_file(self) -> Path:
        """The key this process signs with (``REGISTRY_AUTH_IDENTITY_FILE`` or in the data dir)."""
        return self.auth.identity_file or self.data_dir / "identity.json"

    @property
    def monitor_identity_file(self) -> Path:
        """The key the guard signs with (``REGISTRY_AUTH_MONITOR_IDENTITY_FILE`` or in the
        data dir)."""
        return self.auth.monitor_identity_file or self.data_dir / "monitor.identity.json"

    @property
    def api_identity_file(self) -> Path:
        """The key the HTTP API signs with as the gateway ``api`` (``REGISTRY_API_IDENTITY_FILE``
        or in the data dir)."""
        return self.api.identity_file or self.data_dir / "api.identity.json"

    @property
    def api_tokens_file(self) -> Path:
        """The HTTP API's bearer tokens, hashed (``REGISTRY_API_TOKENS_FILE`` or in the data
        dir)."""
        return self.api.tokens_file or self.data_dir / "api-tokens.json"

    def topic(self, name: str) -> str:
        """The full topic name for a logical ``name`` (e.g. ``registry.events``)."""
        return f"{self.topic_prefix}{name}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client."""
        if not self.bootstrap_servers:
            raise SettingsError(
                "no Kafka bootstrap address: set KAFKA_BOOTSTRAP_SERVERS or run `model-registry up`"
            )
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            **self.kafka.client_kwargs(),
        }


# --------------------------------------------------------------------------- reading


def _read(cls: type[Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` that the environment sets (sections in full)."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        kind: Any = hints[f.name]
        if isinstance(kind, type) and is_dataclass(kind):  # a section: read in full
            section: type[Any] = kind
            values[f.name] = section(**_read(section, env))
            continue
        names = [f.metadata.get("env") or f"{cls.ENV}{f.name.upper()}"]
        names += list(f.metadata.get("aliases", ()))
        legacy = getattr(cls, "LEGACY_ENV", None)
        if legacy:
            names.append(f"{legacy}{f.name.upper()}")
        for i, name in enumerate(names):
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if i > 0:
                log.warning("%s is deprecated; set %s instead", name, names[0])
            values[f.name] = _parse(name, raw, kind)
            break
    return values


def _parse(name: str, raw: str, kind: Any) -> Any:
    if get_origin(kind) in (Union, types.UnionType):
        kind = next(a for a in get_args(kind) if a is not type(None))
    if kind is bool:
        text = raw.strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be a flag (1/0, true/false, yes/no, on/off), not {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise SettingsError(f"{name} must be {what}, not {raw!r}") from None
    if kind is Path:
        return Path(raw)
    if get_origin(kind) is tuple:
        item = get_args(kind)[0]
        return tuple(item(part.strip()) for part in raw.split(",") if part.strip())
    return raw
