"""One ``Settings``, read once from the environment, in sections; nothing else reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry.infra.settings import PredictorSettings, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_variables_are_read_and_typed_per_section() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "REGISTRY_TOPIC_PREFIX": "crm.",
            "REGISTRY_DATA_DIR": "/var/lib/registry",
            "REGISTRY_DECIDER_ALLOW_CLEAR": "yes",
            "REGISTRY_PROJECTOR_MAX_RECORDS": "500",
            "REGISTRY_PREDICTOR_MAX_BATCH": "10",
            "REGISTRY_PREDICTOR_MOCK_FALLBACK": "on",
            "REGISTRY_PREDICTOR_CACHE_TTL_S": "1.5",
            "REGISTRY_PREDICTOR_ASSIGNMENT": "all",
            "REGISTRY_MONITOR_METRICS_PORT": "0",
            "KAFKA_SASL_USERNAME": "registry",
            "REGISTRY_GRANTS_CALLABLES": "crm.rules:score, crm.rules:churn",
            "REGISTRY_GRANTS_MODEL_ROOTS": "/models,/srv/models",
            "REGISTRY_AUTH_FOUR_EYES": "1",
            "REGISTRY_LIMITS_JSON_DEPTH": "16",
        }
    )
    assert s.grants.callables == ("crm.rules:score", "crm.rules:churn")
    assert s.grants.model_roots == (Path("/models"), Path("/srv/models"))
    assert s.auth.four_eyes is True
    assert s.limits.json_depth == 16
    assert s.actors_file == Path("/var/lib/registry/actors.json")
    assert (s.bootstrap_servers, s.topic_prefix, s.data_dir) == (
        "k1:9092,k2:9092",
        "crm.",
        Path("/var/lib/registry"),
    )
    assert s.fetch_max_wait_ms == 500  # a real Kafka wakes a waiting fetch early
    assert s.decider.allow_clear is True
    assert s.projector.max_records == 500
    p = s.predictor
    assert (p.max_batch, p.mock_fallback, p.cache_ttl_s, p.assignment) == (10, True, 1.5, "all")
    assert s.monitor.metrics_port == 0
    assert s.client_kwargs()["sasl_plain_username"] == "registry"


def test_no_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings().fetch_max_wait_ms == 10  # the embedded broker waits a fetch out
    assert Settings.from_env({}, topic_prefix="t.").topic("registry.events") == "t.registry.events"


def test_earlier_names_are_still_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings.from_env(
        {"PREDICTOR_MAX_BATCH": "7", "REGISTRY_ALLOW_CLEAR": "1", "REGISTRY_PREDICTOR_TUNE_GC": "0"}
    )
    assert (s.predictor.max_batch, s.decider.allow_clear, s.predictor.tune_gc) == (7, True, False)
    assert "PREDICTOR_MAX_BATCH is deprecated; set REGISTRY_PREDICTOR_MAX_BATCH" in caplog.text
    both = Settings.from_env({"PREDICTOR_MAX_BATCH": "7", "REGISTRY_PREDICTOR_MAX_BATCH": "8"})
    assert both.predictor.max_batch == 8  # the current name wins


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REGISTRY_PREDICTOR_MAX_BATCH", "many", "REGISTRY_PREDICTOR_MAX_BATCH must be an integer"),
        ("PREDICTOR_MAX_BATCH", "many", "PREDICTOR_MAX_BATCH must be an integer"),
        ("REGISTRY_MONITOR_OUTCOME_TTL_S", "soon", "must be a number"),
        ("REGISTRY_DECIDER_ALLOW_CLEAR", "maybe", "must be a flag"),
        ("REGISTRY_PREDICTOR_ASSIGNMENT", "some", "'group' or 'all'"),
        ("REGISTRY_PREDICTOR_MAX_BATCH", "0", "at least 1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_sections_check_their_values() -> None:
    with pytest.raises(SettingsError):
        PredictorSettings(assignment="some")
    with pytest.raises(SettingsError):
        PredictorSettings(max_batch=0)
    assert PredictorSettings().with_(max_batch=3).max_batch == 3


def test_the_sasl_password_never_shows() -> None:
    s = Settings.from_env({"KAFKA_SASL_PASSWORD": "hunter2-secret", "KAFKA_SASL_USERNAME": "u"})
    assert s.kafka.sasl_password == "hunter2-secret"
    assert "hunter2-secret" not in repr(s)
    assert "hunter2-secret" not in str(s)


def test_a_library_client_needs_a_broker_address() -> None:
    with pytest.raises(SettingsError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings().client_kwargs()


ENV_READ = re.compile(r"\bos\.(environ|getenv)\b|\bgetenv\(")
# Secret references (``env:NAME``) are resolved from the environment at call time, on
# purpose: they are credentials the operator grants, not configuration.
ALLOWED = {"registry/infra/settings.py", "consumers/providers/secrets.py"}


def test_nothing_else_reads_the_environment() -> None:
    readers = {
        str(path.relative_to(ROOT))
        for package in ("model_registry", "registry", "projections", "consumers")
        for path in (ROOT / package).rglob("*.py")
        if ENV_READ.search(path.read_text(encoding="utf-8"))
    }
    assert readers <= ALLOWED, sorted(readers - ALLOWED)
    assert "registry/infra/settings.py" in readers  # the check looks where it should
