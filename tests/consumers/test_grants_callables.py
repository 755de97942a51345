"""``custom`` code: only what the operator granted runs, nothing else is even imported; a sync
function runs in its provider's own bounded pool, under the call's timeout.

docs/security-providers.md cites these tests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from consumers.errors import ProviderConfigInvalid, ProviderTimeout
from consumers.providers import BrokenProvider, CallPolicy, ProviderFactory, ProviderSpec
from consumers.providers.custom import CustomProvider
from registry.core.types import ModelType, Provider
from registry.infra.settings import GrantSettings
from tests.consumers import custom_models
from tests.consumers.conftest import custom_config

POLICY = CallPolicy(timeout_s=0.5, retries=0, backoff_s=0.001, concurrency=4)
SCORE = "tests.consumers.custom_models:score"


def _factory(grants: GrantSettings | None = None) -> ProviderFactory:
    return ProviderFactory(POLICY, grants=grants or GrantSettings())


# --------------------------------------------------------------------------- the attacks


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("subprocess:getoutput", "touch {marker}"),
        ("os:system", "touch {marker}"),
        ("builtins:eval", "open({marker!r}, 'w').write('x')"),
        ("builtins:exec", "open({marker!r}, 'w').write('x')"),
        ("os:getenv", "MODEL_SECRET_ATTACKED"),
    ],
)
async def test_a_model_cannot_name_arbitrary_code(
    target: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_SECRET_ATTACKED", "the-value-an-attacker-wants-7731")
    marker = tmp_path / "marker"
    provider = _factory().get_provider(custom_config("attack", target))
    assert isinstance(provider, BrokenProvider)
    (out,) = await provider.predict_batch([command.format(marker=str(marker))])
    assert isinstance(out, ProviderConfigInvalid)
    assert "not granted" in out.message
    assert "the-value-an-attacker-wants-7731" not in out.message
    assert not marker.exists()


async def test_an_ungranted_module_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    module = "evil_model_module_5521"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef run(value):\n    return value\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    provider = _factory().get_provider(custom_config("attack", f"{module}:run"))
    assert isinstance(provider, BrokenProvider)
    assert "not granted" in provider.failure.message
    assert module not in sys.modules
    assert not marker.exists()
    # Granted, the same module is imported (the refusal above is the grant's doing).
    granted = _factory(GrantSettings(callables=(f"{module}:run",))).get_provider(
        custom_config("granted", f"{module}:run")
    )
    assert await granted.predict_batch([{"a": 1}]) == [{"a": 1}]
    assert marker.exists()
    monkeypatch.delitem(sys.modules, module)


async def test_a_grant_is_exact() -> None:
    grants = GrantSettings(callables=(SCORE, "tests.consumers.custom_models:score.__globals__"))
    factory = _factory(grants)
    ok = factory.get_provider(custom_config("rules", SCORE))
    assert await ok.predict_batch([{"visits": 6}]) == [{"label": 1, "score": 0.6}]
    for target in (
        "tests.consumers.custom_models:score_v2",  # another function of a granted module
        "tests.consumers.custom_models:score.__globals__",  # granted, yet no callable
        "tests.consumers:custom_models",
        "tests.consumers.custom_models",
        "tests.consumers.custom_models:score extra",
        "os:system; tests.consumers.custom_models:score",
    ):
        # Built as a spec, past the registry's own shape checks: the loader checks by itself.
        spec = ProviderSpec(
            "other",
            "1.0.0",
            ModelType.CLASSIFICATION,
            Provider.CUSTOM,
            settings={"callable": target},
            grants=grants,
        )
        with pytest.raises(ProviderConfigInvalid):
            CustomProvider(spec)


# --------------------------------------------------------------------------- entry points


@pytest.fixture
def installed_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A distribution on sys.path declaring ``lead-rules`` in ``model_registry.callables``
    (what ``pip install`` of an operator's package leaves behind)."""
    dist = tmp_path / "site" / "operator_models-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: operator-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[model_registry.callables]\nlead-rules = {SCORE}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "lead-rules"


async def test_an_installed_entry_point_is_granted_by_name_and_by_target(
    installed_entry_point: str,
) -> None:
    factory = _factory()  # nothing in grants.callables
    for target in (installed_entry_point, SCORE):
        provider = factory.get_provider(custom_config(f"rules-{len(target)}", target))
        assert not isinstance(provider, BrokenProvider), target
        assert await provider.predict_batch([{"visits": 6}]) == [{"label": 1, "score": 0.6}]
    other = factory.get_provider(custom_config("other", "not-installed"))
    assert isinstance(other, BrokenProvider)
    assert "not granted" in other.failure.message


# --------------------------------------------------------------------------- sync functions


def _sync_provider(name: str, **settings: Any) -> Any:
    grants = GrantSettings(callables=(f"tests.consumers.custom_models:{name}",))
    return ProviderFactory(POLICY, grants=grants).get_provider(
        custom_config(f"sync-{name}", f"tests.consumers.custom_models:{name}", **settings)
    )


async def test_a_slow_sync_function_does_not_hold_the_event_loop() -> None:
    provider = _sync_provider("sleepy")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    outputs = await provider.predict_batch([{}] * 4)  # 4 threads: 0.3 s together, not 1.2 s
    elapsed = time.monotonic() - started
    ticker.cancel()
    assert outputs == [{"label": 0}] * 4
    assert elapsed < 1.0
    assert ticks >= 10  # the loop kept running while the threads slept
    await provider.aclose()


async def test_a_stuck_sync_function_times_out_and_starves_only_its_own_pool() -> None:
    custom_models.GATE.clear()
    custom_models.STARTED.clear()
    stuck = _sync_provider("blocking", timeoutS=0.2, maxConcurrency=2)
    other = _sync_provider("score")
    try:
        started = time.monotonic()
        outputs = await stuck.predict_batch([{"n": 1}, {"n": 2}])
        assert all(isinstance(o, ProviderTimeout) for o in outputs)
        assert time.monotonic() - started < 1.0
        # Both threads still run: their slots stay taken, so the next call waits for a
        # slot within its timeout and never starts the function.
        (late,) = await stuck.predict_batch([{"n": 3}])
        assert isinstance(late, ProviderTimeout)
        assert custom_models.STARTED == [{"n": 1}, {"n": 2}]
        # Another model has its own pool: unaffected.
        assert await other.predict_batch([{"visits": 6}]) == [{"label": 1, "score": 0.6}]
        custom_models.GATE.set()  # the stuck threads end and give their slots back
        for _ in range(100):
            (again,) = await stuck.predict_batch([{"n": 4}])
            if not isinstance(again, ProviderTimeout):
                break
        assert again == {"label": 1}
    finally:
        custom_models.GATE.set()
        await stuck.aclose()
        await other.aclose()
