"""`model-registry identity create|show`: keys for other actors, without a traceback."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
from click.testing import CliRunner

from model_registry.cli.main import main
from registry.core.auth import Actors
from registry.infra.identity import load_identity


def test_identity_create_writes_a_private_key_and_prints_its_actors_line(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "ci.json"
    result = CliRunner().invoke(main, ["identity", "create", "ml-ci", "--out", str(key)])
    assert result.exit_code == 0, result.output
    entry = orjson.loads(result.output)
    assert entry["name"] == "ml-ci"
    assert entry["public_key"] == load_identity(key).public_key
    assert len(Actors.parse({"actors": [entry]})) == 1  # the line goes into an actors file as is
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = CliRunner().invoke(main, ["identity", "create", "ml-ci", "--out", str(key)])
    assert again.exit_code == 2
    assert "never overwritten" in again.output
    bad = CliRunner().invoke(main, ["identity", "create", "a b", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    shown = CliRunner().invoke(
        main, ["identity", "show"], env={"REGISTRY_AUTH_IDENTITY_FILE": str(key)}
    )
    assert shown.exit_code == 0
    assert shown.output.startswith(f"ml-ci {entry['public_key']}")
    missing = CliRunner().invoke(
        main, ["identity", "show"], env={"REGISTRY_AUTH_IDENTITY_FILE": str(tmp_path / "none")}
    )
    assert missing.exit_code == 2
    assert "Traceback" not in missing.output
    assert "no signing identity" in missing.output
