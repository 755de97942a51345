"""Credential references resolve only within the grants; a refusal never tells whether a
variable or a file exists, and an ungranted reference sends nothing anywhere.

docs/security-providers.md cites these tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumers.errors import CredentialUnavailable
from consumers.providers import CallPolicy, ProviderFactory
from consumers.providers.secrets import NOT_GRANTED, UNAVAILABLE, resolve_reference
from registry.core.types import ModelConfig
from registry.infra.settings import GrantSettings
from tests.consumers.loopback import Reply, serve

AWS_SECRET = "aws-secret-of-the-host-never-to-leave-0993"
POLICY = CallPolicy(timeout_s=1, retries=0)


def _message(reference: str, grants: GrantSettings) -> str:
    with pytest.raises(CredentialUnavailable) as info:
        resolve_reference("credentials.apiKey", reference, grants)
    return info.value.message


def test_env_references_need_a_granted_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("MODEL_SECRET_OPENAI", "sk-granted-by-the-operator-1234")
    monkeypatch.delenv("AWS_NOT_SET_ANYWHERE", raising=False)
    defaults = GrantSettings()
    assert (
        resolve_reference("credentials.apiKey", "env:MODEL_SECRET_OPENAI", defaults).reveal()
        == "sk-granted-by-the-operator-1234"
    )
    set_one = _message("env:AWS_SECRET_ACCESS_KEY", defaults)
    unset_one = _message("env:AWS_NOT_SET_ANYWHERE", defaults)
    assert NOT_GRANTED in set_one
    assert set_one.replace("AWS_SECRET_ACCESS_KEY", "X") == unset_one.replace(
        "AWS_NOT_SET_ANYWHERE", "X"
    )
    assert AWS_SECRET not in set_one
    for name in ("PATH", "HOME", "MODEL_SECRET", "model_secret_x"):  # no prefix games
        assert NOT_GRANTED in _message(f"env:{name}", defaults)
    monkeypatch.delenv("MODEL_SECRET_UNSET", raising=False)
    assert UNAVAILABLE in _message("env:MODEL_SECRET_UNSET", defaults)


def test_file_references_only_under_the_secrets_dir_and_never_tell_what_exists(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "openai").write_text("sk-from-the-secrets-dir-5678\n")
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "id_rsa").write_text("-----BEGIN " + "OPENSSH PRIVATE KEY-----\n")  # built: fake
    (secrets / "link").symlink_to(outside / "id_rsa")
    (secrets / "dangling").symlink_to(outside / "nothing")
    grants = GrantSettings(secrets_dir=secrets)
    assert (
        resolve_reference("credentials.apiKey", f"file:{secrets}/openai", grants).reveal()
        == "sk-from-the-secrets-dir-5678"
    )
    refused = [
        f"file:{outside}/id_rsa",  # exists
        f"file:{outside}/id_dsa",  # does not
        f"file:{secrets}/../home/id_rsa",
        f"file:{secrets}/../home/nothing",
        f"file:{secrets}/link",  # a link out
        f"file:{secrets}/dangling",
        "file:/root/.ssh/id_rsa",
        "file:/etc/shadow",
        f"file:{secrets}",
    ]
    for reference in refused:
        message = _message(reference, grants)
        assert message == f"credentials.apiKey: {reference} {NOT_GRANTED}", reference
        assert "BEGIN" not in message
    # Without a secrets dir no file is granted at all.
    assert NOT_GRANTED in _message(f"file:{secrets}/openai", GrantSettings())


def test_granted_but_unavailable_says_one_thing_without_strerror(tmp_path: Path) -> None:
    (tmp_path / "blank").write_text("\n")
    (tmp_path / "a-directory").mkdir()
    grants = GrantSettings(secrets_dir=tmp_path)
    messages = {
        _message(f"file:{tmp_path}/{name}", grants).replace(name, "<name>")
        for name in ("missing", "blank", "a-directory")
    }
    assert messages == {f"credentials.apiKey: file:{tmp_path}/<name> {UNAVAILABLE}"}
    for words in ("No such file", "Is a directory", "Permission denied", "Errno"):
        assert not any(words in m for m in messages)


def _openai(endpoint: str, credentials: dict[str, str], grants: GrantSettings) -> Any:
    config = ModelConfig.model_validate(
        {
            "id": "llm",
            "name": "llm",
            "version": "1.0.0",
            "type": "nlp",
            "provider": "openai",
            "providerConfig": {
                "provider": "openai",
                "endpoint": endpoint,
                "credentials": credentials,
                "model": "gpt-4o-mini",
            },
        }
    )
    return ProviderFactory(POLICY, grants=grants).get_provider(config)


@pytest.mark.parametrize("reference", ["env:AWS_SECRET_ACCESS_KEY", "file:/etc/hostname"])
async def test_an_ungranted_credential_is_never_sent(
    reference: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: a model sends the host's secret to the attacker's server as its API key.
    Even with the server's host granted, the reference is not: nothing is sent."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    with serve(lambda req: Reply(200, {"echo": str(req.headers)})) as server:
        provider = _openai(
            server.url + "/v1", {"apiKey": reference}, GrantSettings(hosts=("127.0.0.1",))
        )
        (out,) = await provider.predict_batch(["hi"])
        await provider.aclose()
        assert isinstance(out, CredentialUnavailable)
        assert NOT_GRANTED in out.message
        assert AWS_SECRET not in out.message
        assert server.count() == 0
