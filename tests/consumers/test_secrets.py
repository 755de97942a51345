"""Credential references: resolved at call time within the grants, never shown, scrubbed
from text. (What is refused outside the grants: test_grants_credentials.py.)"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from consumers.errors import CredentialUnavailable
from consumers.providers.secrets import UNAVAILABLE, Secret, redact, resolve_reference
from registry.infra.settings import GrantSettings

GRANTS = GrantSettings(env_prefixes=("TEST_PRED_",))


def test_env_reference_resolves_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PRED_KEY", "first-value-123")
    assert (
        resolve_reference("credentials.apiKey", "env:TEST_PRED_KEY", GRANTS).reveal()
        == "first-value-123"
    )
    monkeypatch.setenv(
        "TEST_PRED_KEY", "rotated-value-456"
    )  # a rotation is picked up by the next call
    assert (
        resolve_reference("credentials.apiKey", "env:TEST_PRED_KEY", GRANTS).reveal()
        == "rotated-value-456"
    )


def test_file_reference(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-a-file-789\n")
    grants = GrantSettings(secrets_dir=tmp_path)
    assert (
        resolve_reference("credentials.apiKey", f"file:{path}", grants).reveal()
        == "from-a-file-789"
    )


def test_unset_variable_names_the_variable_not_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_PRED_MISSING", raising=False)
    with pytest.raises(CredentialUnavailable) as info:
        resolve_reference("credentials.apiKey", "env:TEST_PRED_MISSING", GRANTS)
    assert info.value.code == "CredentialUnavailable"
    assert "TEST_PRED_MISSING" in info.value.message
    assert "credentials.apiKey" in info.value.message


def test_missing_unreadable_and_empty_files_say_the_same(tmp_path: Path) -> None:
    grants = GrantSettings(secrets_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    unreadable = tmp_path / "folder"  # a directory cannot be read as a file, even by root
    unreadable.mkdir()
    messages = set()
    for path in (tmp_path / "nope", empty, unreadable):
        with pytest.raises(CredentialUnavailable) as info:
            resolve_reference("credentials.k", f"file:{path}", grants)
        assert UNAVAILABLE in info.value.message
        messages.add(info.value.message.replace(str(path), "<path>"))
    assert len(messages) == 1, messages


def test_a_raw_value_is_not_a_reference() -> None:
    with pytest.raises(CredentialUnavailable) as info:
        resolve_reference("credentials.apiKey", "sk-live-raw-secret")
    assert "sk-live-raw-secret" not in str(info.value)


def test_a_secret_never_shows_its_value() -> None:
    secret = Secret("credentials.apiKey", "hidden-value-0001")
    assert "hidden-value-0001" not in repr(secret)
    assert "hidden-value-0001" not in str(secret)
    assert "hidden-value-0001" not in f"{secret} {[secret]} {dict(k=secret)}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_redact_scrubs_what_was_revealed() -> None:
    secret = Secret("credentials.apiKey", "scrub-me-please-42")
    assert (
        redact("error: scrub-me-please-42 rejected") == "error: scrub-me-please-42 rejected"
    )  # not revealed yet
    secret.reveal()
    assert (
        redact("error: scrub-me-please-42 rejected, again scrub-me-please-42")
        == "error: *** rejected, again ***"
    )
