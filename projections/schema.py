"""The projection's SQLite schema (one file, WAL mode) and its version.

Bumping ``SCHEMA_VERSION`` makes the projector rebuild the file from offset 0 at start;
a projection is disposable, so there are no migrations.

Times are UTC ISO-8601 text with microseconds and a ``+00:00`` suffix (fixed width, so text
order is time order); JSON columns hold the wire (camelCase) form; ``partition``/``offset``
are positions in ``registry.events``.
"""

from __future__ import annotations

from pathlib import Path

from registry.infra.settings import Settings

__all__ = [
    "INDEXES",
    "LOAD_INDEXES",
    "REGISTRY_REVISION_KEY",
    "SCHEMA_VERSION",
    "TABLES",
    "projection_path",
    "writer_pragmas",
]

SCHEMA_VERSION = 3  # 3: the models indexes end with model_id (paging)
REGISTRY_REVISION_KEY = "registry_revision"


def projection_path(settings: Settings) -> Path:
    """The default projection file: ``<data_dir>/projection.db``."""
    return settings.data_dir / "projection.db"


TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS projection_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        topic       TEXT NOT NULL,
        partition   INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, partition)
    )""",
    # Current state per model id: one row, replaced as events arrive.
    """CREATE TABLE IF NOT EXISTS models (
        model_id           TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        version            TEXT NOT NULL,
        type               TEXT NOT NULL,
        provider           TEXT NOT NULL,
        status             TEXT NOT NULL,
        description        TEXT NOT NULL,
        endpoint           TEXT,
        last_trained       TEXT,
        config             TEXT NOT NULL,
        metrics            TEXT,
        revision           INTEGER NOT NULL,
        registered_at      TEXT NOT NULL,
        updated_at         TEXT NOT NULL,
        ab_test_id         TEXT,
        champion_model_id  TEXT,
        traffic_percentage REAL,
        ab_routing         TEXT,
        split_version      INTEGER,
        ab_started_at      TEXT,
        last_partition     INTEGER NOT NULL,
        last_offset        INTEGER NOT NULL,
        aliases            TEXT,     -- JSON list of the aliases naming it, NULL for none
        served_by          TEXT,     -- promoted over: the model serving what names this one
        replaces           TEXT,     -- promoted: the champion it replaced (rollback target)
        ab_mode            TEXT,     -- 'split' or 'shadow' while a test runs
        ab_guardrails      TEXT      -- the running test's guardrails (JSON), if any
    )""",
    # One row per alias: which model it names now (its history is in ``events``).
    """CREATE VIEW IF NOT EXISTS model_aliases AS
        SELECT j.value AS alias, m.model_id, m.version, m.status
        FROM models AS m, json_each(m.aliases) AS j
        WHERE m.aliases IS NOT NULL""",
    # Every version an id has carried: its config and status as released, its latest metrics.
    """CREATE TABLE IF NOT EXISTS model_versions (
        model_id          TEXT NOT NULL,
        version           TEXT NOT NULL,
        major             INTEGER NOT NULL,
        minor             INTEGER NOT NULL,
        patch             INTEGER NOT NULL,
        released_status   TEXT NOT NULL,
        config            TEXT NOT NULL,
        metrics           TEXT,
        released_at       TEXT NOT NULL,
        released_by       TEXT NOT NULL,
        released_revision INTEGER NOT NULL,
        partition         INTEGER NOT NULL,
        offset            INTEGER NOT NULL,
        superseded_at     TEXT,
        PRIMARY KEY (model_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS status_history (
        model_id    TEXT NOT NULL,
        revision    INTEGER NOT NULL,
        from_status TEXT,
        to_status   TEXT NOT NULL,
        changed_at  TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT,
        event_type  TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        partition   INTEGER NOT NULL,
        offset      INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ab_tests (
        test_id             TEXT PRIMARY KEY,
        challenger_model_id TEXT NOT NULL,
        champion_model_id   TEXT NOT NULL,
        routing             TEXT NOT NULL,
        traffic_percentage  REAL NOT NULL,
        split_version       INTEGER NOT NULL,
        status              TEXT NOT NULL,
        started_at          TEXT NOT NULL,
        started_by          TEXT NOT NULL,
        started_offset      INTEGER NOT NULL,
        stopped_at          TEXT,
        stopped_by          TEXT,
        stop_reason         TEXT,
        stopped_offset      INTEGER,
        partition           INTEGER NOT NULL,
        mode                TEXT NOT NULL DEFAULT 'split',
        guardrails          TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS ab_test_splits (
        test_id             TEXT NOT NULL,
        split_version       INTEGER NOT NULL,
        traffic_percentage  REAL NOT NULL,
        previous_percentage REAL,
        changed_at          TEXT NOT NULL,
        actor               TEXT NOT NULL,
        partition           INTEGER NOT NULL,
        offset              INTEGER NOT NULL,
        PRIMARY KEY (test_id, split_version)
    )""",
    # The audit log: every decodable record of registry.events, verbatim. ``applied`` = 0
    # marks an event that was not folded in (see projection_errors).
    """CREATE TABLE IF NOT EXISTS events (
        partition      INTEGER NOT NULL,
        offset         INTEGER NOT NULL,
        event_id       TEXT NOT NULL,
        type           TEXT NOT NULL,
        model_id       TEXT NOT NULL,
        revision       INTEGER NOT NULL,
        actor          TEXT NOT NULL,
        occurred_at    TEXT NOT NULL,
        correlation_id TEXT,
        causation_id   TEXT,
        schema_version INTEGER NOT NULL,
        applied        INTEGER NOT NULL,
        timestamp_ms   INTEGER NOT NULL,
        key            BLOB,
        headers        TEXT NOT NULL,
        value          TEXT NOT NULL
    )""",
    # What the projector refused: revision gaps (the event is in ``events`` with applied = 0)
    # and unreadable records (only their digest is kept: a stray record may hold anything).
    """CREATE TABLE IF NOT EXISTS projection_errors (
        partition    INTEGER NOT NULL,
        offset       INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        reason       TEXT NOT NULL,
        model_id     TEXT,
        event_type   TEXT,
        event_id     TEXT,
        revision     INTEGER,
        timestamp_ms INTEGER NOT NULL,
        key          BLOB,
        headers      TEXT NOT NULL,
        value_sha256 TEXT,
        value_size   INTEGER NOT NULL
    )""",
)

# Secondary indexes; a rebuild creates them after the bulk load (faster than maintaining them).
INDEXES: tuple[str, ...] = (
    # Filters on (type, status, provider) are answered inside an index: a model row is read
    # only when it matches, whichever combination is asked; the ids in the index (last) let a
    # page of ``list_models`` be chosen and sorted there too, before any row is read.
    "CREATE INDEX IF NOT EXISTS models_type_status ON models(type, status, provider, model_id)",
    "CREATE INDEX IF NOT EXISTS models_status ON models(status, provider, model_id)",
    "CREATE INDEX IF NOT EXISTS models_provider_status ON models(provider, status, model_id)",
    "CREATE INDEX IF NOT EXISTS models_updated_at ON models(updated_at)",
    "CREATE INDEX IF NOT EXISTS models_champion ON models(champion_model_id) WHERE "
    "champion_model_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS model_versions_released_at ON model_versions(released_at)",
    "CREATE INDEX IF NOT EXISTS status_history_model ON status_history(model_id, partition, "
    "offset)",
    "CREATE INDEX IF NOT EXISTS status_history_changed_at ON status_history(changed_at)",
    "CREATE INDEX IF NOT EXISTS status_history_to ON status_history(to_status, changed_at)",
    "CREATE INDEX IF NOT EXISTS ab_tests_champion ON ab_tests(champion_model_id)",
    "CREATE INDEX IF NOT EXISTS ab_tests_challenger ON ab_tests(challenger_model_id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_position ON events(partition, offset)",
    "CREATE INDEX IF NOT EXISTS events_model ON events(model_id, partition, offset)",
    "CREATE INDEX IF NOT EXISTS events_type ON events(type, occurred_at)",
    "CREATE INDEX IF NOT EXISTS events_actor ON events(actor, occurred_at)",
    "CREATE INDEX IF NOT EXISTS events_occurred_at ON events(occurred_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS projection_errors_position ON projection_errors(partition, "
    "offset)",
)

# The indexes a bulk load keeps up to date while it inserts (the rest are built at the end):
# maintained in the writer process, they cost nothing while the fold is the slower side.
LOAD_INDEXES: tuple[str, ...] = INDEXES


def writer_pragmas(bulk: bool) -> tuple[str, ...]:
    """Connection settings of the one writer.

    Live: WAL (readers never block the writer), ``synchronous=NORMAL`` (a commit survives a
    process crash; an OS crash may lose the last batches, which the projector replays, because
    the position is in the same transaction). Bulk (a rebuild into a private file): no journal.
    """
    common = ("PRAGMA cache_size=-65536", "PRAGMA temp_store=MEMORY", "PRAGMA busy_timeout=10000")
    if bulk:
        return ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", *common)
    return ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *common)
