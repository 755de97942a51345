"""The CLI starts fast because it imports little; guarded by what it imports, never by time
(``bench/cli.py`` measures the time).

- ``--help`` imports click and the CLI's own light modules: no pydantic model, no Kafka client,
  no read side, no API; and still lists every command as it would with all of them loaded.
- ``models get ID`` reads the projection with sqlite3 and prints without pydantic, the same
  bytes as the full path (``ProjectionReader`` and ``render.reads.model_detail``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from model_registry.cli import reads
from model_registry.cli.lazy import Lazy, LazyCommands
from model_registry.cli.main import AB_COMMANDS, MAIN_COMMANDS, MODELS_COMMANDS, main
from projections import Projector
from projections.schema import projection_path
from registry.core.messages import (
    AliasPayload,
    AssignAlias,
    PromoteChallenger,
    RecordMetrics,
    RecordMetricsPayload,
    RegisterModel,
    StartABTest,
    StartABTestPayload,
)
from registry.core.types import Guardrails, Metrics, ModelConfig, ModelType, Provider, Status
from registry.infra.settings import Settings
from tests.projections.workload import History, produce, random_history

REPO = Path(__file__).resolve().parents[2]

# What no start-up path may import: the pydantic models and what builds them, Kafka clients,
# the read side, the services, the API, the demo's scikit-learn.
HEAVY = (
    "pydantic",
    "pydantic_core",
    "aiokafka",
    "registry.core.messages",
    "registry.core.types",
    "registry.core.codec",
    "registry.core.fastcheck",
    "registry.core.rules",
    "registry.decider",
    "projections",
    "consumers",
    "model_registry.client",
    "model_registry.api",
    "model_registry.stack",
    "model_registry.render.reads",
    "sklearn",
    "numpy",
    "yaml",
    "cryptography",
    "starlette",
    "fastapi",
)
# The CLI modules --help may import: the entry point and the light modules it needs.
HELP_MODULES = {
    "model_registry",
    "model_registry.__main__",
    "model_registry.cli",
    "model_registry.cli.errors",
    "model_registry.cli.lazy",
    "model_registry.cli.main",
}

# Runs the CLI as `python -m model_registry ARGS` does, then prints (to stderr, last line)
# every module the process imported.
_PROBE = """\
import atexit, json, runpy, sys
atexit.register(lambda: print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["model-registry", *sys.argv[1:]]
runpy.run_module("model_registry", run_name="__main__", alter_sys=True)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "KAFKA_"))}
    env.update(extra)
    return env


def run_probed(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The CLI in a fresh process: its result and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    marker = done.stderr.rfind("MODULES ")
    assert marker >= 0, done.stderr[-3000:]
    return done, set(json.loads(done.stderr[marker + len("MODULES ") :]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_no_model_no_kafka_and_lists_every_command(tmp_path: Path) -> None:
    done, modules = run_probed(["--help"], _clean_env(REGISTRY_DATA_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _heavy(modules) == []
    ours = {m for m in modules if m.split(".")[0] in {"model_registry", "registry"}}
    assert ours <= HELP_MODULES, sorted(ours - HELP_MODULES)
    commands = done.stdout.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert listed == {*MAIN_COMMANDS, "models", "ab", "schemas"}


@pytest.mark.parametrize("group", [[], ["models"], ["ab"], ["audit"]])
def test_group_help_imports_nothing_heavy(group: list[str], tmp_path: Path) -> None:
    done, modules = run_probed([*group, "--help"], _clean_env(REGISTRY_DATA_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    if group in ([], ["models"], ["ab"]):
        assert _heavy(modules) == []
    assert "Commands:" in done.stdout


# A fresh process renders each group's --help lazily, loads every command, renders again.
_LISTING = """\
import json
from click.testing import CliRunner
from model_registry.cli.main import main

def render():
    out = {}
    for group in ([], ["models"], ["ab"]):
        for width in (40, 80, 120, 300):
            r = CliRunner().invoke(main, [*group, "--help"], terminal_width=width)
            assert r.exit_code == 0, r.output
            out[f"{' '.join(group)}@{width}"] = r.output
    return out

lazy = render()
for name in list(main.commands):
    group = main.commands[name]
    for sub in list(getattr(group, "commands", {})):
        group.commands[sub]
print(json.dumps({"lazy": lazy, "loaded": render()}))
"""


def test_the_lazy_listing_reads_as_the_loaded_one() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LISTING],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    both = json.loads(done.stdout)
    assert both["lazy"] == both["loaded"]


# In a fresh process, commands looked up in ORDER: each must be found whatever was loaded
# before it (``audit`` is defined by one module and extended by another).
_ORDER = """\
import sys
from click.testing import CliRunner
from model_registry.cli.main import main

for args in sys.argv[1:]:
    r = CliRunner().invoke(main, [*args.split(), "--help"])
    assert r.exit_code == 0, (args, r.output)
"""


@pytest.mark.parametrize(
    "order",
    [
        ["models get", "audit verify", "audit replay"],
        ["identity", "audit verify"],
        ["audit replay", "audit verify", "identity create"],
        ["projector", "audit show", "audit verify"],
        ["ab report", "ab start", "monitor", "models list", "models register", "up"],
    ],
)
def test_commands_are_found_whatever_was_loaded_first(order: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ORDER, *order],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_each_listed_help_is_the_command_s_own() -> None:
    """The tables in main.py against the commands themselves (all loaded here)."""
    groups: list[tuple[click.Group, dict[str, Lazy]]] = [
        (main, MAIN_COMMANDS),
        (main.commands["models"], MODELS_COMMANDS),  # type: ignore[list-item]
        (main.commands["ab"], AB_COMMANDS),  # type: ignore[list-item]
    ]
    for group, table in groups:
        assert isinstance(group.commands, LazyCommands)
        for name, lazy in table.items():
            command = group.commands[name]
            assert command.name == name
            assert command.short_help is None
            assert not command.hidden
            assert not command.deprecated
            first = " ".join((command.help or "").partition("\n\n")[0].split())
            assert first == lazy.help, name
        # every command the modules register is in its table (else --help would omit it)
        eager = {"models", "ab", "schemas"} if group is main else set()
        assert set(group.commands) == set(table) | eager
    audit = main.commands["audit"]
    assert isinstance(audit, click.Group)
    assert set(audit.commands) == {"replay", "show", "verify"}


def test_the_default_projection_is_the_read_side_s(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with click.Context(main, obj=settings):
        assert reads._db(None) == projection_path(settings)


# --------------------------------------------------------------------------- models get


def _story() -> History:
    """Random histories, then what they lack: endpoint, aliases, guardrails, a shadow test,
    a promotion (served by / replaces)."""
    h = random_history(400, seed=7, n_models=14, allow_clear=False)
    for mid in ("lead-a", "lead-b", "lead-c", "lead-d", "lead-e", "lead-f"):
        config = ModelConfig(
            id=mid,
            name=f"Lead [bold]{mid}[/]",  # rich markup and emoji codes print as they always did
            version="2.1.0",
            type=ModelType.NLP,
            provider=Provider.CUSTOM,
            description="Scores leads: [red]warm[/] or :thumbs_up: ones" if mid != "lead-e" else "",
            endpoint="https://models.example.com/x" if mid != "lead-e" else None,
            status=Status.ACTIVE,
        )
        h.do(RegisterModel(model_id=mid, payload=config, actor="ml"))
    h.do(
        RecordMetrics(
            model_id="lead-a",
            payload=RecordMetricsPayload(
                metrics=Metrics(accuracy=87, precision=80.25, f1_score=100, mse=0.0, mae=3.5)
            ),
            actor="ci",
        )
    )
    h.do(AssignAlias(model_id="lead-a", payload=AliasPayload(alias="lead@production"), actor="a"))
    h.do(AssignAlias(model_id="lead-a", payload=AliasPayload(alias="lead@stable"), actor="a"))
    h.do(
        StartABTest(
            model_id="lead-b",
            payload=StartABTestPayload(
                champion_model_id="lead-a",
                traffic_percentage=20,
                guardrails=Guardrails(max_error_rate=5, min_samples=200),
            ),
            actor="a",
        )
    )
    h.do(
        StartABTest(
            model_id="lead-d",
            payload=StartABTestPayload(
                champion_model_id="lead-c", traffic_percentage=35, mode="shadow"
            ),
            actor="a",
        )
    )
    h.do(
        StartABTest(
            model_id="lead-f",
            payload=StartABTestPayload(
                champion_model_id="lead-e",
                traffic_percentage=12.5,
                routing="random",
                guardrails=Guardrails(max_latency_p99_ms=250, promote_when_better=True),
            ),
            actor="a",
        )
    )
    h.do(PromoteChallenger(model_id="lead-b", actor="a"))
    return h


def _get(settings: Settings, *args: str) -> Result:
    env = {"REGISTRY_DATA_DIR": str(settings.data_dir), "KAFKA_BOOTSTRAP_SERVERS": None}
    return CliRunner().invoke(main, ["models", "get", *args], env=env, catch_exceptions=False)


async def test_models_get_prints_what_the_full_path_prints(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _story()
    await produce(settings, h.events)
    await Projector(settings, projection_path(settings)).catch_up()
    ids = sorted(h.state.models) + ["lead@production", "lead@stable", "nope", "no@such"]

    answered: list[Any] = []
    fast = reads._fast_detail

    def counted(path: Path, model_id: str) -> bool | None:
        answered.append(fast(path, model_id))
        return answered[-1]

    monkeypatch.setattr(reads, "_fast_detail", counted)
    quick = await asyncio.to_thread(lambda: [_get(settings, i) for i in ids])
    monkeypatch.setattr(reads, "_fast_detail", lambda path, model_id: None)
    full = await asyncio.to_thread(lambda: [_get(settings, i) for i in ids])

    for model_id, q, f in zip(ids, quick, full, strict=True):
        assert (q.exit_code, q.output) == (f.exit_code, f.output), model_id
    assert None not in answered  # the fast path answered every one of them
    assert answered.count(False) == 2
    shown = {i: q.output for i, q in zip(ids, quick, strict=True)}
    assert (
        "metrics      accuracy=87.0, precision=80.25, f1Score=100.0, mse=0.0, mae=3.5"
        in (shown["lead-a"])
    )
    assert "served by    lead-b" in shown["lead-a"]
    assert "replaces     lead-a" in shown["lead-b"]
    assert "shadow test" in shown["lead-d"]
    assert "A/B test     " in shown["lead-f"]
    assert "guardrails   " in shown["lead-f"]


async def test_models_get_imports_no_model_no_kafka(settings: Settings) -> None:
    h = _story()
    await produce(settings, h.events)
    await Projector(settings, projection_path(settings)).catch_up()
    env = _clean_env(REGISTRY_DATA_DIR=str(settings.data_dir))
    done, modules = await asyncio.to_thread(run_probed, ["models", "get", "lead@stable"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "aliases      lead@production, lead@stable" in done.stdout
    assert _heavy(modules) == []
