"""Raw secrets found by their look, anywhere in a command, and never echoed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core.codec import decode_command
from registry.core.errors import DecodeError
from registry.core.secrets import find_secret, looks_secret

# Built at run time from pieces: obviously fake, and no scanner flags this file.
FAKE = {
    "openai": "sk-" + "proj-" + "A1b2" * 8,
    "anthropic": "sk-" + "ant-" + "api03-" + "x9" * 20,
    "aws": "AKIA" + "ABCDEFGHIJKLMNOP",
    "jwt": "eyJ" + "hbGciOiJIUzI1NiJ9" + ".eyJ" + "zdWIiOiIxMjM0In0" + ".sig_nature",
    "pem": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE...",
    "github": "ghp_" + "a" * 36,
    "google": "AIza" + "B" * 35,
}


def _register(**payload: Any) -> dict[str, Any]:
    base = {"id": "m", "name": "M", "version": "1.0.0", "type": "nlp", "provider": "openai"}
    return {"id": "c1", "type": "RegisterModel", "model_id": "m", "payload": {**base, **payload}}


# Each way a secret slipped past the old key-name check (issue 13), and where it is found.
LEAKS: list[tuple[str, dict[str, Any], str]] = [
    (
        "list under apiKey",
        _register(credentials={"apiKey": ["plain"]}),
        "payload.credentials.apiKey[0]",
    ),
    (
        "dict under apiKey",
        _register(providerConfig={"provider": "openai", "apiKey": {"value": "plain"}}),
        "payload.providerConfig.apiKey.value",
    ),
    (
        "?key= in endpoint",
        _register(endpoint="https://h.example/v1?key=abc123"),
        "payload.endpoint",
    ),
    ("?api_key=", _register(endpoint="https://h.example/v1?x=1&api_key=abc"), "payload.endpoint"),
    (
        "SAS sig=",
        _register(endpoint="https://a.blob.core.windows.net/c?sv=2022&sig=AbC%2Bd"),
        "payload.endpoint",
    ),
    (
        "Password= in a connection string",
        _register(
            providerConfig={"provider": "openai", "connectionString": "Server=db;Password=hunter2"}
        ),
        "payload.providerConfig.connectionString",
    ),
    ("under key", _register(parameters={"key": "abc"}), "payload.parameters.key"),
    (
        "under pwd",
        _register(parameters={"nested": [{"pwd": "abc"}]}),
        "payload.parameters.nested[0].pwd",
    ),
    ("in description", _register(description=f"uses {FAKE['openai']}"), "payload.description"),
    (
        "in reason",
        {
            "id": "c",
            "type": "ChangeStatus",
            "model_id": "m",
            "payload": {"status": "testing", "reason": FAKE["aws"]},
        },
        "payload.reason",
    ),
    ("in actor", {**_register(), "actor": FAKE["jwt"]}, "actor"),
    ("as a dict key", _register(parameters={FAKE["openai"]: 1}), "payload.parameters.*"),
    (
        "user:password@ in a URL",
        _register(endpoint="https://u:p4ss@h.example/v1"),
        "payload.endpoint",
    ),
]


@pytest.mark.parametrize(("name", "message", "path"), LEAKS, ids=[c[0] for c in LEAKS])
def test_each_leak_is_found_and_named_by_path_only(
    name: str, message: dict[str, Any], path: str
) -> None:
    assert find_secret(message) == path


@pytest.mark.parametrize("kind", sorted(FAKE))
def test_well_known_formats_are_found_anywhere(kind: str) -> None:
    secret = FAKE[kind]
    assert looks_secret(secret)
    assert find_secret({"a": [{"b": f"text {secret} text"}]}) == "a[0].b"
    assert find_secret({"a": {secret: "x"}}) == "a.*"  # a key is masked, never printed


def test_references_and_ordinary_settings_are_not_secrets() -> None:
    ok = _register(
        credentials={"apiKey": "env:MODEL_SECRET_OPENAI", "region": "eu-west-1"},
        providerConfig={
            "provider": "openai",
            "endpoint": "https://api.openai.com/v1?api-version=2024-01-01",
            "maxTokens": 256,
            "tokenizer": "cl100k",
            "authType": "key",
        },
        description="Scores leads; see https://docs.example/models?page=2",
        parameters={"temperature": 0.2, "keywords": ["a", "b"], "monkey": "business"},
    )
    assert find_secret(ok) is None


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["a", "name", "items", "x1"]), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    st.sampled_from(sorted(FAKE)),
    st.data(),
)
def test_a_secret_hidden_anywhere_is_found(tree: Any, kind: str, data: st.DataObject) -> None:
    """Property: put a well-known secret at a random place of any JSON tree: it is found,
    and the path printed never contains it."""
    secret = FAKE[kind]
    holder: Any = {"root": tree}
    node: Any = holder
    key: Any = "root"
    while isinstance(node[key], dict | list) and node[key] and data.draw(st.booleans()):
        node = node[key]
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
    node[key] = data.draw(st.sampled_from([secret, f"x {secret}", [secret], {"k": secret}]))
    path = find_secret(holder)
    assert path is not None
    assert secret not in path


def test_bad_versions_and_unknown_metric_names_are_not_echoed() -> None:
    marker = "zz" + "Leak" * 3
    bad_version = _register(version=f"1.0.{marker}")
    with pytest.raises(DecodeError) as err:
        decode_command(orjson.dumps(bad_version))
    assert marker not in err.value.reason
    unknown_metric = _register(metrics={f"{FAKE['openai']}": 1})
    with pytest.raises(DecodeError) as err:
        decode_command(orjson.dumps(unknown_metric))
    assert FAKE["openai"] not in err.value.reason
    unknown_type = {"id": "c", "type": FAKE["aws"], "model_id": "m"}
    with pytest.raises(DecodeError) as err:
        decode_command(orjson.dumps(unknown_type))
    assert FAKE["aws"] not in err.value.reason
