"""Explanations end to end: a running predictor, ``model-registry predict --explain``."""

from __future__ import annotations

from pathlib import Path

from consumers.client import PredictionClient
from registry.core.predictions import PredictionRequest, PredictionResult
from registry.infra.settings import Settings
from tests.consumers.conftest import (
    RegistryWriter,
    custom_config,
    lead_input,
    running_consumer,
    sklearn_config,
)
from tests.consumers.test_cli import _cli


async def _ask(
    client: PredictionClient, request_id: str, model_id: str, explain: bool
) -> PredictionResult:
    request = PredictionRequest(
        id=request_id, model_id=model_id, input=lead_input(5), explain=explain
    )
    await client.send(request)
    return await client.wait_for(request.id, 20)


async def test_predict_explain_prints_the_top_factors(
    settings: Settings, registry: RegistryWriter, lead_models: dict[str, Path]
) -> None:
    await registry.register(sklearn_config("lead-lr", lead_models["champion"]))
    await registry.register(custom_config("rules-v1", "tests.consumers.custom_models:score"))
    lead = '{"visits": 8, "emails_opened": 3, "company_size": 120, "budget_k": 40}'
    async with running_consumer(settings):
        code, out, err = await _cli(settings, "predict", "lead-lr", "--input", lead, "--explain")
        assert code == 0, err
        assert "output    {" in out
        assert "why       linear: log-odds of class 1 = " in out
        factors = [line for line in out.splitlines() if line.startswith("  ")]
        assert len(factors) == 4  # four features, all shown
        assert {line.split()[0] for line in factors} == {
            "visits",
            "emails_opened",
            "company_size",
            "budget_k",
        }
        assert all(line.split()[-1][0] in "+-" for line in factors)  # signed contributions

        code, out, err = await _cli(settings, "predict", "lead-lr", "--input", lead)
        assert code == 0, err
        assert "why" not in out

        # A model that cannot explain: the prediction, and why there is no explanation.
        code, out, err = await _cli(settings, "predict", "rules-v1", "--input", lead, "--explain")
        assert code == 0, err
        assert "output    {" in out
        assert "why       no explanation: " in out
        assert "no explain attribute" in out


async def test_explanations_are_never_lost_to_the_cache(
    settings: Settings, registry: RegistryWriter, lead_models: dict[str, Path]
) -> None:
    await registry.register(sklearn_config("lead-lr", lead_models["champion"]))
    async with running_consumer(settings), PredictionClient(settings) as client:
        plain = await _ask(client, "p-1", "lead-lr", explain=False)
        asked = await _ask(client, "e-1", "lead-lr", explain=True)  # same input, after it
        again = await _ask(client, "e-2", "lead-lr", explain=True)
        plain_again = await _ask(client, "p-2", "lead-lr", explain=False)
    assert plain.explanation is None
    assert plain.explanation_error is None
    for result in (asked, again):
        assert result.explanation is not None, result.explanation_error
        assert result.output == plain.output
        assert not result.cached
    assert plain_again.cached
    assert plain_again.explanation is None
