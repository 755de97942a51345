"""The data dir is its owner's only, and one stack holds it at a time."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from model_registry.client import ModelRegistry
from model_registry.stack import Stack
from registry.infra.files import DataDirLock, DataDirLocked, write_private
from registry.infra.identity import load_identity
from registry.infra.settings import Settings
from tests.helpers import model_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_stack_keeps_its_data_dir_private_and_to_itself(
    settings: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh"
    mine = settings.with_(data_dir=data_dir)
    stack = Stack(mine, components=("decider", "projector"))
    await stack.start()
    try:
        await stack.wait_ready()
        async with ModelRegistry(mine) as reg:  # signs with the identity `up` created
            await reg.register(model_config("m1"))
        assert load_identity(mine.identity_file).actor == reg.actor
        second = Stack(mine, components=("decider",))
        with pytest.raises(DataDirLocked, match="in use by a running decider"):
            await second.start()
        await second.stop()
    finally:
        await stack.stop()
    assert _mode(data_dir) == 0o700
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"identity.json", "actors.json", "projection.db"}
    for path in files:
        assert _mode(path) & 0o077 == 0, f"{path.name} is {oct(_mode(path))}"
    # the lock died with the stack: the data dir can be used again
    again = Stack(mine, components=("decider",))
    await again.start()
    await again.stop()


def test_the_lock_is_per_component_and_names_its_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path, "decider"):
        DataDirLock(tmp_path, "projector").acquire()  # another component may share the dir
        with pytest.raises(DataDirLocked) as taken:
            DataDirLock(tmp_path, "decider").acquire()
        assert f"pid {os.getpid()}" in str(taken.value)


def test_private_files_are_0600_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_private(tmp_path / "d" / "key.json", b"{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "d") == 0o700
    assert _mode(tmp_path / "d" / "key.json") == 0o600
