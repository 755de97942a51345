"""The public face: what ``model_registry`` exports is what the README shows, and it works."""

from __future__ import annotations

import re
import types
from pathlib import Path

import model_registry

ROOT = Path(__file__).resolve().parents[2]


def test_every_exported_name_exists_and_nothing_else_is_exported() -> None:
    exported = set(model_registry.__all__)
    public = {  # dir(): the package imports its names on first use (the CLI starts fast)
        name
        for name in dir(model_registry)
        if not name.startswith("_")
        and not isinstance(getattr(model_registry, name), types.ModuleType)
    }
    assert exported == public
    for name in exported:
        assert getattr(model_registry, name) is not None, name


def test_the_readme_imports_only_what_the_package_exports() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    imported = re.findall(r"^from model_registry import (.+)$", readme, flags=re.M)
    assert imported, "the README shows how to import the Python API"
    for line in imported:
        for name in (n.strip() for n in line.split(",")):
            assert name in model_registry.__all__, name


def test_settings_come_from_the_environment_once() -> None:
    settings = model_registry.Settings.from_env({"REGISTRY_TOPIC_PREFIX": "crm."})
    assert settings.topic("registry.events") == "crm.registry.events"
