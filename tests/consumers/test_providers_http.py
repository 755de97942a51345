"""HTTP providers against loopback servers that speak each API: OpenAI (through the openai
SDK), Anthropic Messages, Azure ML scoring and SageMaker InvokeEndpoint (SigV4 verified here,
independently of botocore). Each: a success, a 5xx (retried), a 4xx (not retried), a timeout,
and the resolved secret never showing in a failure or a log line."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from consumers.errors import (
    PredictionFailure,
    ProviderBadResponse,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from consumers.providers import CallPolicy, ModelProvider, ProviderFactory
from registry.core.types import ModelConfig
from registry.infra.settings import GrantSettings
from tests.consumers.loopback import Reply, Request, serve

SECRET = "sk-test-very-secret-value-0042"
AWS_SECRET = "aws-secret-key-do-not-leak-0042"
POLICY = CallPolicy(timeout_s=0.3, retries=1, backoff_s=0.001, concurrency=4)
# What these tests use, granted as an operator would: the loopback servers' address and the
# TEST_ variables (docs/security-providers.md). tests/consumers/test_grants_hosts.py shows
# what happens without.
GRANTS = GrantSettings(hosts=("127.0.0.1",), env_prefixes=("TEST_",))


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    monkeypatch.setenv("TEST_AWS_ACCESS", "AKIDTESTACCESS")
    monkeypatch.setenv("TEST_AWS_SECRET", AWS_SECRET)


def _provider(
    provider: str,
    endpoint: str,
    credentials: dict[str, str],
    model_type: str = "nlp",
    grants: GrantSettings = GRANTS,
    **settings: Any,
) -> ModelProvider:
    config = ModelConfig.model_validate(
        {
            "id": f"{provider}-model",
            "name": "m",
            "version": "1.0.0",
            "type": model_type,
            "provider": provider,
            "status": "active",
            "providerConfig": {
                "provider": provider,
                "endpoint": endpoint,
                "credentials": credentials,
                **settings,
            },
        }
    )
    return ProviderFactory(POLICY, grants=grants).get_provider(config)


def _echo_everything(status: int) -> Callable[[Request], Reply]:
    """A misbehaving API that puts the request's headers (the key!) into its error body."""
    return lambda req: Reply(status, {"error": {"message": f"bad key; you sent {req.headers}"}})


async def _assert_no_leak(
    provider: ModelProvider, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for status in (401, 500):
        with serve(_echo_everything(status)) as server:
            provider_at = _rebind(provider, server.url)
            (failure,) = await provider_at.predict_batch(["hello"])
            assert isinstance(failure, PredictionFailure)
            assert secret not in failure.message
            assert secret not in str(failure)
            assert secret not in repr(failure.args)
            assert str(status) in failure.message
            await provider_at.aclose()
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)


def _rebind(provider: ModelProvider, url: str) -> ModelProvider:
    spec = provider.spec
    settings = dict(spec.settings)
    endpoint = url + (
        "/v1" if spec.provider == "openai" else "/score" if spec.provider == "azure-ml" else ""
    )
    return _provider(
        str(spec.provider), endpoint, dict(spec.credentials), str(spec.model_type), **settings
    )


# --------------------------------------------------------------------------- OpenAI


def _openai_api(req: Request) -> Reply:
    if req.header("authorization") != f"Bearer {SECRET}":
        return Reply(
            401,
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
        )
    body = req.json()
    if req.path == "/v1/embeddings":
        return Reply(
            200,
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "model": body["model"],
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            },
        )
    assert req.path == "/v1/chat/completions", req.path
    content = body["messages"][-1]["content"]
    answer = '{"label": "positive"}' if "json" in content else "positive"
    return Reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        },
    )


async def test_openai_chat_and_embeddings() -> None:
    with serve(_openai_api) as server:
        chat = _provider(
            "openai",
            server.url + "/v1",
            {"apiKey": "env:TEST_LLM_KEY"},
            model="gpt-4o-mini",
            systemPrompt="Classify sentiment.",
        )
        (out,) = await chat.predict_batch([{"text": "I love this product"}])
        assert (out["prediction"], out["model"], out["finishReason"]) == (
            "positive",
            "gpt-4o-mini",
            "stop",
        )
        assert out["usage"]["total_tokens"] == 6
        sent = server.requests[0].json()
        assert sent["messages"] == [
            {"role": "system", "content": "Classify sentiment."},
            {"role": "user", "content": "I love this product"},
        ]
        parsed = _provider(
            "openai",
            server.url + "/v1",
            {"apiKey": "env:TEST_LLM_KEY"},
            model="gpt-4o-mini",
            parseJson=True,
        )
        assert await parsed.predict_batch(["answer in json"]) == [{"label": "positive"}]
        embed = _provider(
            "openai",
            server.url + "/v1",
            {"apiKey": "env:TEST_LLM_KEY"},
            model="text-embedding-3-small",
            api="embeddings",
        )
        assert await embed.predict_batch(["lead notes"]) == [
            {"embedding": [0.1, 0.2, 0.3], "model": "text-embedding-3-small"}
        ]
        for p in (chat, parsed, embed):
            await p.aclose()


async def test_openai_5xx_is_retried_then_reported() -> None:
    with serve(lambda req: Reply(503, {"error": {"message": "overloaded"}})) as server:
        provider = _provider(
            "openai", server.url + "/v1", {"apiKey": "env:TEST_LLM_KEY"}, model="gpt-4o-mini"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderUnavailable)
        assert "503" in out.message
        assert server.count() == 2  # one try + one retry (the SDK's own retries are off)
        await provider.aclose()


async def test_openai_4xx_is_not_retried() -> None:
    with serve(_openai_api) as server:
        provider = _provider(
            "openai", server.url + "/v1", {"apiKey": "env:TEST_LLM_KEY"}, model="gpt-4o-mini"
        )
        wrong_key = _provider(
            "openai", server.url + "/v1", {"apiKey": "env:TEST_AWS_ACCESS"}, model="gpt-4o-mini"
        )
        (out,) = await wrong_key.predict_batch(["hi"])
        assert isinstance(out, ProviderRejected)
        assert "401" in out.message
        assert server.count() == 1
        await provider.aclose()
        await wrong_key.aclose()


async def test_openai_timeout() -> None:
    with serve(lambda req: Reply(200, {}, delay=1.0)) as server:
        provider = _provider(
            "openai", server.url + "/v1", {"apiKey": "env:TEST_LLM_KEY"}, model="gpt-4o-mini"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderTimeout)
        await provider.aclose()


async def test_openai_never_leaks_the_key(caplog: pytest.LogCaptureFixture) -> None:
    provider = _provider(
        "openai", "http://127.0.0.1:9/v1", {"apiKey": "env:TEST_LLM_KEY"}, model="gpt-4o-mini"
    )
    await _assert_no_leak(provider, SECRET, caplog)


# --------------------------------------------------------------------------- Anthropic


def _anthropic_api(req: Request) -> Reply:
    if req.path != "/v1/messages":
        return Reply(
            404, {"type": "error", "error": {"type": "not_found_error", "message": req.path}}
        )
    if req.header("x-api-key") != SECRET or req.header("anthropic-version") != "2023-06-01":
        return Reply(
            401,
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
        )
    body = req.json()
    return Reply(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "churn risk: high"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 4},
        },
    )


async def test_anthropic_messages() -> None:
    with serve(_anthropic_api) as server:
        provider = _provider(
            "anthropic",
            server.url,
            {"apiKey": "env:TEST_LLM_KEY"},
            model="claude-sonnet-4",
            maxOutput=64,
            systemPrompt="Assess churn.",
        )
        (out,) = await provider.predict_batch([{"prompt": "Customer stopped logging in."}])
        assert out == {
            "prediction": "churn risk: high",
            "model": "claude-sonnet-4",
            "stopReason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 4},
        }
        sent = server.requests[0].json()
        assert sent == {
            "model": "claude-sonnet-4",
            "max_tokens": 64,
            "system": "Assess churn.",
            "messages": [{"role": "user", "content": "Customer stopped logging in."}],
        }
        await provider.aclose()


async def test_anthropic_overloaded_is_transient_and_4xx_is_not() -> None:
    with serve(
        lambda req: Reply(
            529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    ) as server:
        provider = _provider(
            "anthropic", server.url, {"apiKey": "env:TEST_LLM_KEY"}, model="claude-sonnet-4"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderUnavailable)
        assert "529" in out.message
        assert "Overloaded" in out.message
        assert server.count() == 2
        await provider.aclose()
    with serve(_anthropic_api) as server:
        provider = _provider(
            "anthropic", server.url, {"apiKey": "env:TEST_AWS_ACCESS"}, model="claude-sonnet-4"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderRejected)
        assert "401" in out.message
        assert server.count() == 1
        await provider.aclose()


async def test_anthropic_timeout_and_bad_body() -> None:
    with serve(lambda req: Reply(200, {}, delay=1.0)) as server:
        provider = _provider(
            "anthropic", server.url, {"apiKey": "env:TEST_LLM_KEY"}, model="claude-sonnet-4"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderTimeout)
        assert server.count() == 2
        await provider.aclose()
    with serve(
        lambda req: Reply(200, b"<html>gateway</html>", headers={"Content-Type": "text/html"})
    ) as server:
        provider = _provider(
            "anthropic", server.url, {"apiKey": "env:TEST_LLM_KEY"}, model="claude-sonnet-4"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert isinstance(out, ProviderBadResponse)
        await provider.aclose()


async def test_anthropic_never_leaks_the_key(caplog: pytest.LogCaptureFixture) -> None:
    provider = _provider(
        "anthropic", "http://127.0.0.1:9", {"apiKey": "env:TEST_LLM_KEY"}, model="claude-sonnet-4"
    )
    await _assert_no_leak(provider, SECRET, caplog)


# --------------------------------------------------------------------------- Azure ML


def _azure_api(req: Request) -> Reply:
    if req.path != "/score" or req.header("authorization") != f"Bearer {SECRET}":
        return Reply(401, {"message": "unauthorized"})
    rows = req.json()["data"]
    return Reply(
        200,
        {
            "predictions": [
                {
                    "label": int(r["visits"] > 3),
                    "deployment": req.header("azureml-model-deployment"),
                }
                for r in rows
            ]
        },
    )


async def test_azure_ml_scores_in_batches() -> None:
    with serve(_azure_api) as server:
        provider = _provider(
            "azure-ml",
            server.url + "/score",
            {"apiKey": "env:TEST_LLM_KEY"},
            "classification",
            deployment="blue",
            batchSize=2,
        )
        outputs = await provider.predict_batch([{"visits": v} for v in range(5)])
        assert outputs == [{"label": int(v > 3), "deployment": "blue"} for v in range(5)]
        assert server.count() == 3  # 2 + 2 + 1
        await provider.aclose()


async def test_azure_ml_5xx_timeout_and_wrong_length() -> None:
    with serve(lambda req: Reply(502, {"message": "upstream"})) as server:
        provider = _provider(
            "azure-ml", server.url + "/score", {"apiKey": "env:TEST_LLM_KEY"}, "classification"
        )
        outputs = await provider.predict_batch([{"visits": 1}, {"visits": 2}])
        assert all(isinstance(o, ProviderUnavailable) and "502" in o.message for o in outputs)
        assert server.count() == 2  # one batch call, retried once
        await provider.aclose()
    with serve(lambda req: Reply(200, [1], delay=1.0)) as server:
        provider = _provider(
            "azure-ml",
            server.url + "/score",
            {"apiKey": "env:TEST_LLM_KEY"},
            "classification",
            timeoutS=0.2,
            retries=0,
        )
        (out,) = await provider.predict_batch([{"visits": 1}])
        assert isinstance(out, ProviderTimeout)
        await provider.aclose()
    with serve(lambda req: Reply(200, [{"label": 1}])) as server:
        provider = _provider(
            "azure-ml", server.url + "/score", {"apiKey": "env:TEST_LLM_KEY"}, "classification"
        )
        outputs = await provider.predict_batch([{"visits": 1}, {"visits": 2}])
        assert all(isinstance(o, ProviderBadResponse) for o in outputs)
        await provider.aclose()
    with serve(lambda req: Reply(400, {"message": "bad schema"})) as server:
        provider = _provider(
            "azure-ml", server.url + "/score", {"apiKey": "env:TEST_LLM_KEY"}, "classification"
        )
        (out,) = await provider.predict_batch([{"visits": 1}])
        assert isinstance(out, ProviderRejected)
        assert "bad schema" in out.message
        assert server.count() == 1
        await provider.aclose()


async def test_azure_ml_never_leaks_the_key(caplog: pytest.LogCaptureFixture) -> None:
    provider = _provider(
        "azure-ml", "http://127.0.0.1:9/score", {"apiKey": "env:TEST_LLM_KEY"}, "classification"
    )
    await _assert_no_leak(provider, SECRET, caplog)


# --------------------------------------------------------------------------- SageMaker

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<access>[^/]+)/(?P<date>\d{8})/"
    r"(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def sigv4_is_valid(req: Request, secret_key: str) -> bool:
    """Recompute the AWS Signature Version 4 of a received request (by the published algorithm)."""
    auth = _AUTH.match(req.header("authorization") or "")
    if auth is None:
        return False
    signed = auth["signed"].split(";")
    if not {"host", "x-amz-date"} <= set(signed):
        return False
    canonical_headers = "".join(f"{h}:{' '.join((req.header(h) or '').split())}\n" for h in signed)
    path, _, query = req.path.partition("?")
    canonical_request = "\n".join(
        [
            "POST",
            path,
            query,
            canonical_headers,
            auth["signed"],
            hashlib.sha256(req.body).hexdigest(),
        ]
    )
    scope = f"{auth['date']}/{auth['region']}/{auth['service']}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            req.header("x-amz-date") or "",
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (auth["date"], auth["region"], auth["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, auth["signature"])


def _sagemaker_api(secret_key: str) -> Callable[[Request], Reply]:
    def respond(req: Request) -> Reply:
        if req.path != "/endpoints/lead-scoring-prod/invocations":
            return Reply(404, {"message": "no such endpoint"})
        auth = _AUTH.match(req.header("authorization") or "")
        if (
            auth is None
            or auth["service"] != "sagemaker"
            or auth["region"] != "eu-west-1"
            or auth["access"] != "AKIDTESTACCESS"
        ):
            return Reply(403, {"message": "bad credential scope"})
        if not sigv4_is_valid(req, secret_key):
            return Reply(
                403,
                {
                    "message": "The request signature we calculated does not match "
                    "the signature you provided."
                },
            )
        features = req.json()
        return Reply(200, {"score": features["visits"] / 10})

    return respond


_AWS = {
    "accessKeyId": "env:TEST_AWS_ACCESS",
    "secretAccessKey": "env:TEST_AWS_SECRET",
    "region": "eu-west-1",
}


async def test_sagemaker_requests_carry_a_valid_sigv4_signature() -> None:
    with serve(_sagemaker_api(AWS_SECRET)) as server:
        provider = _provider(
            "aws-sagemaker", server.url, _AWS, "classification", endpointName="lead-scoring-prod"
        )
        outputs = await provider.predict_batch([{"visits": 3}, {"visits": 7}])
        assert outputs == [{"score": 0.3}, {"score": 0.7}]
        for req in server.requests:
            assert sigv4_is_valid(req, AWS_SECRET)
            assert AWS_SECRET not in str(req.headers)  # only the signature travels
            assert req.header("content-type") == "application/json"
        await provider.aclose()


async def test_sagemaker_signature_check_has_teeth() -> None:
    # The server knows another secret: the same client's signature must not verify.
    with serve(_sagemaker_api("some-other-secret")) as server:
        provider = _provider(
            "aws-sagemaker", server.url, _AWS, "classification", endpointName="lead-scoring-prod"
        )
        (out,) = await provider.predict_batch([{"visits": 3}])
        assert isinstance(out, ProviderRejected)
        assert "403" in out.message
        assert "signature" in out.message
        assert server.count() == 1
        await provider.aclose()


async def test_sagemaker_5xx_and_timeout() -> None:
    with serve(lambda req: Reply(500, {"message": "ModelError"})) as server:
        provider = _provider(
            "aws-sagemaker", server.url, _AWS, "classification", endpointName="lead-scoring-prod"
        )
        (out,) = await provider.predict_batch([{"visits": 3}])
        assert isinstance(out, ProviderUnavailable)
        assert "500" in out.message
        assert server.count() == 2
        await provider.aclose()
    with serve(lambda req: Reply(200, {"score": 1}, delay=1.0)) as server:
        provider = _provider(
            "aws-sagemaker",
            server.url,
            _AWS,
            "classification",
            endpointName="lead-scoring-prod",
            retries=0,
        )
        (out,) = await provider.predict_batch([{"visits": 3}])
        assert isinstance(out, ProviderTimeout)
        await provider.aclose()


async def test_sagemaker_needs_a_region_and_an_endpoint_name() -> None:
    no_region = _provider(
        "aws-sagemaker",
        "http://127.0.0.1:9",
        {k: v for k, v in _AWS.items() if k != "region"},
        endpointName="x",
    )
    (out,) = await no_region.predict_batch([{}])
    assert out.code == "ProviderConfigInvalid"
    assert "region" in out.message
    no_name = _provider("aws-sagemaker", "http://127.0.0.1:9", _AWS)
    (out,) = await no_name.predict_batch([{}])
    assert out.code == "ProviderConfigInvalid"
    assert "endpointName" in out.message


async def test_sagemaker_never_leaks_the_secret_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for status in (403, 500):
        with serve(_echo_everything(status)) as server:
            provider = _provider(
                "aws-sagemaker",
                server.url,
                _AWS,
                "classification",
                endpointName="lead-scoring-prod",
            )
            (out,) = await provider.predict_batch([{"visits": 1}])
            assert isinstance(out, PredictionFailure)
            assert AWS_SECRET not in out.message
            await provider.aclose()
    assert AWS_SECRET not in caplog.text


async def test_missing_credential_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LLM_KEY")
    with serve(_anthropic_api) as server:
        provider = _provider(
            "anthropic", server.url, {"apiKey": "env:TEST_LLM_KEY"}, model="claude-sonnet-4"
        )
        (out,) = await provider.predict_batch(["hi"])
        assert out.code == "CredentialUnavailable"
        assert "TEST_LLM_KEY" in out.message
        assert server.count() == 0  # nothing was sent without a key
        await provider.aclose()
