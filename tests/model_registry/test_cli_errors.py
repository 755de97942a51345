"""A person's mistakes get a sentence and the README's exit code, never a traceback.

Exit codes: 1 nothing found / a prediction's error / unexpected, 2 rejected or invalid
input, 3 unreachable or timed out. Each path runs through click's CliRunner (exceptions not
caught by the runner: one that escapes the CLI fails the test) or a real process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from model_registry.cli.errors import explain
from model_registry.cli.main import main
from registry.core.errors import BrokerUnavailable
from registry.infra.identity import ensure_local
from registry.infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE_BROKER = "127.0.0.1:1"  # nothing listens on port 1: refused at once

GOOD_YAML = """\
id: lead-scoring-v9
name: Lead scoring v9
version: 1.0.0
type: classification
provider: scikit-learn
status: testing
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A data dir with a signing identity (no stack runs on it) and the files users get
    wrong."""
    ensure_local(Settings(data_dir=tmp_path / "data"))
    (tmp_path / "good.yaml").write_text(GOOD_YAML)
    (tmp_path / "bad.yaml").write_text("id: [lead\n  name: : x\n")
    (tmp_path / "list.yaml").write_text("- id: a\n- id: b\n")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "truncated.json").write_text('{"id": "lead-scoring-v9", "name": ')
    (tmp_path / "incomplete.json").write_text('{"id": "lead-scoring-v9"}')
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01garbage")
    (tmp_path / "secret.yaml").write_text(
        GOOD_YAML.replace("provider: scikit-learn", "provider: openai")
        + "providerConfig:\n  provider: openai\n  credentials:\n    apiKey: sk-live-1234567890\n"
    )
    (tmp_path / "not-a-db").write_bytes(b"definitely not sqlite" * 50)
    (tmp_path / "a-file").write_text("x")
    return tmp_path


def invoke(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def no_stack_env(root: Path) -> dict[str, str | None]:
    """No broker configured and no `up` on the data dir."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "REGISTRY_TOPIC_PREFIX": None,
        "REGISTRY_DATA_DIR": str(root / "data"),
    }


def check(result: Result, code: int, *needles: str) -> None:
    stderr = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert stderr.strip(), "a failure says why on stderr"
    said = [line for line in stderr.splitlines() if line.strip()]
    assert len(said) <= 4, stderr  # click's usage lines and the sentence, nothing more
    for needle in needles:
        assert needle in stderr, stderr


ID = "lead-scoring-v9"

# (arguments, exit code, what stderr must say); {root} is the test's directory.
WITHOUT_A_STACK: list[tuple[list[str], int, tuple[str, ...]]] = [
    # models: invalid arguments, checked before anything is sent
    (["models", "release", ID, "2.1"], 2, ("not a semantic version",)),
    (["models", "release", ID, "1.1.0", "--status", "gone"], 2, ("'training'",)),
    (["models", "metrics", ID, "--set", "accuracy=120"], 2, ("less than or equal to 100",)),
    (["models", "metrics", ID, "--set", "rmse=1"], 2, ("unknown metric 'rmse'", "f1Score")),
    (["models", "metrics", ID, "--set", "accuracy"], 2, ("accuracy needs a number",)),
    (["models", "metrics", ID, "--set", "mse=-1"], 2, ("greater than or equal to 0",)),
    (["models", "metrics", ID], 2, ("give at least one",)),
    (["models", "status", ID, "retired"], 2, ("'deprecated'",)),
    (["models", "status", "bad id!", "active"], 2, ("a model id is",)),
    (["models", "status", ID, "active", "--expected-revision", "-1"], 2, ("-1",)),
    (["models", "unregister", "x" * 200], 2, ("a model id is",)),
    # models register: the file
    (["models", "register", "-f", "{root}/bad.yaml"], 2, ("not valid YAML", "line 2")),
    (["models", "register", "-f", "{root}/list.yaml"], 2, ("one model config object",)),
    (["models", "register", "-f", "{root}/empty.json"], 2, ("is empty",)),
    (["models", "register", "-f", "{root}/truncated.json"], 2, ("not valid JSON", "complete")),
    (["models", "register", "-f", "{root}/incomplete.json"], 2, ("InvalidCommand", "name")),
    (["models", "register", "-f", "{root}/binary.yaml"], 2, ("not a UTF-8 text file",)),
    (["models", "register", "-f", "{root}/secret.yaml"], 2, ("SecretInConfig", "apiKey")),
    (["models", "register", "-f", "{root}/missing.yaml"], 2, ("does not exist",)),
    (["models", "register"], 2, ("'-f' / '--file'",)),
    # models reads: filters are the known values; no projection yet is "unreachable"
    (["models", "list", "--type", "bogus"], 2, ("'classification'", "'forecasting'")),
    (["models", "list", "--status", "live"], 2, ("'active'", "'unregistered'")),
    (["models", "list", "--provider", "aws"], 2, ("'aws-sagemaker'",)),
    (["models", "list"], 3, ("no projection",)),
    (["models", "get", ID], 3, ("no projection",)),
    (["models", "get", ID, "--as-of", "yesterday"], 2, ("neither an offset nor",)),
    (["models", "versions", ID], 3, ("no projection",)),
    (["models", "history", ID], 3, ("no projection",)),
    (["models", "list", "--db", "{root}/not-a-db"], 2, ("cannot read the database",)),
    (["models", "list", "--db", "{root}/missing.db"], 3, ("no projection",)),
    # writes need a running registry
    (["models", "register", "-f", "{root}/good.yaml"], 3, ("no registry is running",)),
    (["models", "release", ID, "1.1.0"], 3, ("model-registry up",)),
    (["models", "metrics", ID, "--set", "accuracy=87.5"], 3, ("KAFKA_BOOTSTRAP_SERVERS",)),
    # ab
    (["ab", "start", ID, "--champion", "lead-v1", "--traffic", "120"], 2, ("0<=x<=100",)),
    (["ab", "start", ID, "--traffic", "20"], 2, ("'--champion'",)),
    (["ab", "start", ID, "--champion", "lead-v1", "--traffic", "20"], 3, ("no registry",)),
    (["ab", "start", ID, "--champion", "a", "--traffic", "5", "--routing", "x"], 2, ("hash",)),
    (["ab", "traffic", ID, "lots"], 2, ("'lots' is not a valid float",)),
    (["ab", "stop", ID], 3, ("no registry is running",)),
    (["ab", "report", ID], 3, ("no monitor database",)),
    (["ab", "report", ID, "--min-requests", "0"], 2, ("x>=1",)),
    (["ab", "report", ID, "--db", "{root}/a-file/x.db"], 3, ()),
    # predict
    (["predict", ID, "--input", "{not json"], 2, ("not JSON",)),
    (["predict", ID, "--input", "42"], 2, ("must be a JSON object",)),
    (["predict", ID, "--input", "@{root}/missing.json"], 2, ("cannot read",)),
    (["predict", "bad id!", "--input", "{}"], 2, ("a model id is",)),
    (["predict", ID, "--input", "{}", "--timeout", "0"], 2, ("0.1",)),
    (["predict", ID], 2, ("'--input'",)),
    (["predict", ID, "--input", "{}"], 3, ("no registry is running",)),
    # audit
    (["audit", "replay", "--type", "ModelDeleted"], 2, ("'ModelRegistered'",)),
    (["audit", "replay", "--since", "yesterday"], 2, ("neither an offset nor",)),
    (["audit", "replay", "--since", "42"], 2, ("ISO-8601",)),
    (["audit", "replay", "--from-offset", "-1"], 2, ("x>=0",)),
    (["audit", "replay", "--from-offset", "5", "--to-offset", "2"], 2, ("--from-offset",)),
    (["audit", "replay"], 3, ("no registry is running",)),
    (["audit", "show", ID], 3, ("no projection",)),
    (["audit", "verify"], 3, ("no registry is running",)),
    # monitor, projections, schemas, up, the root
    (["monitor", "--metrics-port", "70000"], 2, ("0<=x<=65535",)),
    (["monitor"], 3, ("no registry is running",)),
    (["projections", "status"], 3, ("no projection",)),
    (["projections", "status", "--db", "{root}/not-a-db"], 2, ("not a projection",)),
    (["projections", "rebuild"], 3, ("no registry is running",)),
    (["decider"], 3, ("no registry is running",)),
    (["projector"], 3, ("no registry is running",)),
    (["predictor", "--max-batch", "0"], 2, ("1<=x<=100000",)),
    (["predictor"], 3, ("no registry is running",)),
    (["schemas", "export", "--out", "{root}/a-file/schemas"], 2, ("cannot write the schemas",)),
    (["up", "--only", "decider,bogus"], 2, ("choose from decider",)),
    (["up", "--metrics-port", "-1"], 2, ("0<=x<=65535",)),
    (["up", "--health-port", "http"], 2, ("'http' is not a valid integer",)),
    (["--log-level", "loud", "models", "list"], 2, ("'warning'",)),
    (["models", "frobnicate"], 2, ("No such command",)),
]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    WITHOUT_A_STACK,
    ids=[" ".join(a).replace("{root}/", "") for a, _, _ in WITHOUT_A_STACK],
)
def test_without_a_stack(files: Path, args: list[str], code: int, says: tuple[str, ...]) -> None:
    argv = [a.replace("{root}", str(files)) for a in args]
    check(invoke(argv, no_stack_env(files)), code, *says)


UNREACHABLE: list[list[str]] = [
    ["models", "register", "-f", "{root}/good.yaml"],
    ["models", "release", ID, "1.1.0"],
    ["models", "status", ID, "active"],
    ["ab", "stop", ID],
    ["predict", ID, "--input", "{}"],
    ["audit", "replay"],
    ["audit", "verify"],
    ["projections", "rebuild"],
    ["monitor", "--no-metrics"],
    ["decider"],
]


@pytest.mark.parametrize("args", UNREACHABLE, ids=[" ".join(a[:2]) for a in UNREACHABLE])
def test_an_unreachable_broker_exits_3(files: Path, args: list[str]) -> None:
    env = {**no_stack_env(files), "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE_BROKER}
    argv = [a.replace("{root}", str(files)) for a in args]
    check(invoke(argv, env), 3, f"cannot reach Kafka at {UNREACHABLE_BROKER}", "model-registry up")


def test_a_bad_setting_is_named_and_exits_2(files: Path) -> None:
    env = {**no_stack_env(files), "REGISTRY_PREDICTOR_MAX_BATCH": "many"}
    check(invoke(["models", "list"], env), 2, "REGISTRY_PREDICTOR_MAX_BATCH must be an integer")
    env = {**no_stack_env(files), "REGISTRY_LOG_LEVEL": "loud"}
    check(invoke(["models", "list"], env), 2, "REGISTRY_LOG_LEVEL must be one of")


def test_no_identity_says_how_to_get_one(tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE_BROKER,
        "REGISTRY_DATA_DIR": str(tmp_path / "nobody"),
    }
    check(invoke(["models", "status", ID, "active"], env), 2, "no signing identity")


def test_an_unexpected_error_is_one_sentence_unless_debug_asks(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(root: Path) -> list[Path]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("model_registry.schemas.export_schemas", broken)
    out = files / "out"
    result = invoke(["schemas", "export", "--out", str(out)], no_stack_env(files))
    check(result, 1, "unexpected error (ZeroDivisionError): division by zero", "--debug")
    with pytest.raises(ZeroDivisionError):
        invoke(["--debug", "schemas", "export", "--out", str(out)], no_stack_env(files))
    with pytest.raises(ZeroDivisionError):
        invoke(
            ["schemas", "export", "--out", str(out)], {**no_stack_env(files), "REGISTRY_DEBUG": "1"}
        )


def test_explain_maps_kinds_to_codes() -> None:
    assert explain(BrokerUnavailable("cannot reach Kafka at x")).exit_code == 3
    assert explain(TimeoutError()).exit_code == 3
    assert explain(OSError(98, "Address already in use")).exit_code == 2
    assert explain(ExceptionGroup("g", [BrokerUnavailable("down")])).exit_code == 3
    assert explain(RuntimeError("x")).exit_code == 1


def _run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REGISTRY_"))}
    return subprocess.run(
        [sys.executable, "-m", "model_registry", *args],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_on_a_taken_port_says_so(tmp_path: Path) -> None:
    async def hold() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            result = await asyncio.to_thread(
                _run,
                ["up", "--status-every", "0", "--metrics-port", str(port)],
                {"REGISTRY_DATA_DIR": str(tmp_path / "reg")},
            )
        finally:
            server.close()
        assert result.returncode == 2, result.stderr[-2000:]
        assert "that port is taken" in result.stderr
        assert "Traceback" not in result.stderr

    asyncio.run(hold())
    assert not (tmp_path / "reg" / "runtime.json").exists()


def test_up_with_an_unreachable_kafka_says_so(tmp_path: Path) -> None:
    result = _run(
        ["up", "--status-every", "0"],
        {"REGISTRY_DATA_DIR": str(tmp_path / "reg"), "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE_BROKER},
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"cannot reach Kafka at {UNREACHABLE_BROKER}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_process_prints_no_traceback_and_no_client_noise(tmp_path: Path) -> None:
    env = {
        "REGISTRY_DATA_DIR": str(tmp_path / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE_BROKER,
    }
    for args in (["predict", ID, "--input", "{}"], ["audit", "replay"]):
        result = _run(args, env)
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr  # the sentence, not aiokafka's or asyncio's logs
        assert lines[0].startswith(f"cannot reach Kafka at {UNREACHABLE_BROKER}")


async def test_a_write_nobody_answers_times_out_with_3(settings: Settings) -> None:
    """A broker but no decider: the write waits its timeout, then exits 3 saying so."""
    env: dict[str, str | None] = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_TOPIC_PREFIX": settings.topic_prefix,
        "REGISTRY_DATA_DIR": str(settings.data_dir),
    }
    result = await asyncio.to_thread(invoke, ["models", "status", ID, "active"], env)
    check(result, 3, "timed out: ", "is the decider running?")
