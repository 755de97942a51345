"""Model files: only under the granted roots, only when the pinned digest matches, checked
before anything is deserialised; pickles only when the operator allows them.

docs/security-providers.md cites these tests.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from consumers.errors import PredictionFailure, ProviderConfigInvalid
from consumers.providers import BrokenProvider, CallPolicy, ProviderFactory, ProviderSpec
from consumers.providers.files import file_digest, model_digest, pinned_model, tree_digest
from consumers.providers.sklearn import SklearnProvider
from registry.core.types import ModelConfig, ModelType, Provider
from registry.infra.settings import GrantSettings
from tests.consumers.conftest import FEATURES, UNKNOWN_DIGEST, lead_input, sklearn_config

POLICY = CallPolicy(timeout_s=5, retries=0)


class _WritesAMarker:
    """A crafted pickle: unpickling it calls ``open(path, 'w').write(...)``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


def _touch(path: str) -> None:  # what the crafted pickle runs when loaded
    Path(path).write_text("code ran")


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``(root, crafted pickle in it, marker it would write)``."""
    root = tmp_path / "models"
    root.mkdir()
    marker = tmp_path / "marker"
    path = root / "model.joblib"
    path.write_bytes(pickle.dumps(_WritesAMarker(marker)))
    return root, path, marker


async def _first(factory: ProviderFactory, config: ModelConfig) -> Any:
    provider = factory.get_provider(config)
    (out,) = await provider.predict_batch([lead_input(1)])
    await provider.aclose()
    return out


# --------------------------------------------------------------------------- pickles


async def test_a_crafted_pickle_never_runs_without_the_pickle_grant(
    crafted: tuple[Path, Path, Path],
) -> None:
    root, path, marker = crafted
    factory = ProviderFactory(POLICY, grants=GrantSettings(model_roots=(root,)))
    out = await _first(factory, sklearn_config("m", path, modelSha256=file_digest(path)))
    assert isinstance(out, ProviderConfigInvalid)
    assert "REGISTRY_GRANTS_ALLOW_PICKLE" in out.message
    assert not marker.exists()


async def test_a_crafted_pickle_never_runs_when_its_digest_does_not_match(
    crafted: tuple[Path, Path, Path],
) -> None:
    root, path, marker = crafted
    grants = GrantSettings(model_roots=(root,), allow_pickle=True)
    factory = ProviderFactory(POLICY, grants=grants)
    pinned_elsewhere = "ab" * 32  # the digest of the file the model was registered with
    out = await _first(factory, sklearn_config("m", path, modelSha256=pinned_elsewhere))
    assert isinstance(out, ProviderConfigInvalid)
    assert "does not match providerConfig.modelSha256" in out.message
    assert not marker.exists()
    # The payload has teeth: granted and pinned, the same file does run (an operator's
    # choice to trust the files under the roots with code).
    out = await _first(factory, sklearn_config("m2", path, modelSha256=file_digest(path)))
    assert marker.read_text() == "code ran"


async def test_a_crafted_pickle_outside_the_roots_is_never_read(
    crafted: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, path, marker = crafted
    other_root = tmp_path / "other-root"
    other_root.mkdir()
    grants = GrantSettings(model_roots=(other_root,), allow_pickle=True)
    out = await _first(
        ProviderFactory(POLICY, grants=grants),
        sklearn_config("m", path, modelSha256=file_digest(path)),
    )
    assert isinstance(out, ProviderConfigInvalid)
    assert "not under a granted model root" in out.message
    assert not marker.exists()


async def test_no_root_granted_no_model_file(crafted: tuple[Path, Path, Path]) -> None:
    _, path, marker = crafted
    provider = ProviderFactory(POLICY, grants=GrantSettings(allow_pickle=True)).get_provider(
        sklearn_config("m", path, modelSha256=file_digest(path))
    )
    assert isinstance(provider, BrokenProvider)
    assert "no model root is granted" in provider.failure.message
    assert not marker.exists()


# --------------------------------------------------------------------------- paths


def _refusal(grants: GrantSettings, path: str | Path) -> str:
    provider = ProviderFactory(POLICY, grants=grants).get_provider(
        sklearn_config("m", Path(path), modelSha256=UNKNOWN_DIGEST)
    )
    if isinstance(provider, BrokenProvider):
        return provider.failure.message
    try:
        provider.pinned.read()  # type: ignore[attr-defined]
    except PredictionFailure as failure:
        return failure.message
    raise AssertionError(f"{path} was read")


def test_escapes_are_refused_with_one_message_whether_or_not_the_target_exists(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.skops").write_text("not for models")
    (root / "link.skops").symlink_to(outside / "secret.skops")
    (root / "dangling.skops").symlink_to(outside / "missing.skops")
    (root / "linked-dir").symlink_to(outside)
    grants = GrantSettings(model_roots=(root,))
    attempts = [
        outside / "secret.skops",  # exists
        outside / "missing.skops",  # does not
        f"{root}/../outside/secret.skops",
        f"{root}/../outside/missing.skops",
        "../outside/secret.skops",  # relative, climbing out
        root / "link.skops",  # a link out
        root / "dangling.skops",  # a link out, to nothing
        root / "linked-dir" / "secret.skops",
        root / "linked-dir" / "missing.skops",
        "/root/.ssh/id_rsa",
        "/etc/passwd",
    ]
    messages = {_refusal(grants, p) for p in attempts}
    assert messages == {
        "scikit-learn model 'm' 1.0.0: providerConfig.modelPath is not under a granted "
        "model root (REGISTRY_GRANTS_MODEL_ROOTS)"
    }


def test_a_path_under_a_root_is_found_absolute_or_relative(tmp_path: Path) -> None:
    roots = (tmp_path / "a", tmp_path / "b")
    for r in roots:
        r.mkdir()
    (roots[1] / "m.skops").write_bytes(b"model bytes")
    digest = file_digest(roots[1] / "m.skops")
    for name in (str(roots[1] / "m.skops"), "m.skops"):
        config = sklearn_config("m", Path(name), modelSha256=digest)
        provider = ProviderFactory(POLICY, grants=GrantSettings(model_roots=roots)).get_provider(
            config
        )
        assert provider.pinned.read() == b"model bytes"  # type: ignore[attr-defined]
    missing = _refusal(GrantSettings(model_roots=roots), roots[0] / "gone.skops")
    assert "does not exist" in missing  # under a root: the operator's own folder


# --------------------------------------------------------------------------- skops


def _forest_and_logistic(root: Path) -> tuple[Path, Path]:
    import numpy as np
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x = np.array([[lead_input(i)[f] for f in FEATURES] for i in range(60)], dtype=float)
    y = (x[:, 0] > 4).astype(int)
    logistic, forest = root / "lr.skops", root / "rf.skops"
    sio.dump(LogisticRegression(max_iter=300).fit(x, y), logistic)
    sio.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), forest)
    return logistic, forest


async def test_skops_files_load_with_skops_own_trusted_types_only(tmp_path: Path) -> None:
    logistic, forest = _forest_and_logistic(tmp_path)
    factory = ProviderFactory(POLICY, grants=GrantSettings(model_roots=(tmp_path,)))
    out = await _first(factory, sklearn_config("lr", logistic, modelSha256=file_digest(logistic)))
    assert set(out) == {"label", "score", "probabilities"}
    out = await _first(factory, sklearn_config("rf", forest, modelSha256=file_digest(forest)))
    assert isinstance(out, ProviderConfigInvalid)
    assert "sklearn.tree._tree.Tree" in out.message
    # With pickles allowed the operator trusts the roots' files with code already: the
    # forest's extra type is trusted too.
    allowed = ProviderFactory(
        POLICY, grants=GrantSettings(model_roots=(tmp_path,), allow_pickle=True)
    )
    out = await _first(allowed, sklearn_config("rf2", forest, modelSha256=file_digest(forest)))
    assert set(out) == {"label", "score", "probabilities"}


async def test_the_demo_models_serve_with_default_grants(tmp_path: Path) -> None:
    from model_registry.demo import CHAMPION, _config, train_lead_models

    trained = train_lead_models(tmp_path / "models")  # where the demo writes them
    factory = ProviderFactory(POLICY, data_dir=tmp_path)  # default grants + <data_dir>/models
    config = ModelConfig.model_validate(_config(CHAMPION, "1.0.0", "active", trained))
    assert config.provider_config is not None
    assert str(config.provider_config.settings["modelPath"]).endswith(".skops")
    provider = factory.get_provider(config)
    outputs = await provider.predict_batch([{"engagement": 0.9, "email_opens": 12}])
    assert set(outputs[0]) == {"label", "score", "probabilities"}
    await factory.aclose()


# --------------------------------------------------------------------------- digests


def test_a_directory_digest_is_the_documented_shell_pipeline(tmp_path: Path) -> None:
    model = tmp_path / "saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(b"\x00" * 100)
    (model / "assets").mkdir()  # empty: does not count
    (model / "Zeta.txt").write_text("upper case sorts first in bytes")
    if shutil.which("find") is None or shutil.which("sha256sum") is None:
        pytest.skip("no GNU find/sha256sum")
    shell = subprocess.run(  # noqa: S602 - the pipeline docs/security-providers.md gives
        "(cd \"$DIR\" && find . -type f -printf '%P\\0' | LC_ALL=C sort -z "
        "| xargs -0 sha256sum) | sha256sum",
        shell=True,
        env={**os.environ, "DIR": str(model)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert tree_digest(model) == shell.stdout.split()[0]
    assert model_digest(model) == tree_digest(model)
    assert model_digest(model / "saved_model.pb") == file_digest(model / "saved_model.pb")


def test_a_directory_copy_is_made_of_the_hashed_bytes_and_refuses_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    model = root / "saved_model"
    model.mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    spec_for = ProviderFactory(POLICY, grants=GrantSettings(model_roots=(root,)))

    def pinned(digest: str) -> Any:
        config = ModelConfig.model_validate(
            {
                "id": "tf",
                "name": "tf",
                "version": "1.0.0",
                "type": "regression",
                "provider": "tensorflow",
                "providerConfig": {
                    "provider": "tensorflow",
                    "modelPath": str(model),
                    "modelSha256": digest,
                },
            }
        )
        return pinned_model(spec_for.spec_of(config))

    copy = pinned(tree_digest(model)).copy_tree()
    try:
        assert (copy / "saved_model.pb").read_bytes() == b"graph"
        assert not copy.is_relative_to(root)
    finally:
        shutil.rmtree(copy)
    with pytest.raises(ProviderConfigInvalid, match="does not match"):
        pinned(UNKNOWN_DIGEST).copy_tree()
    (model / "leak").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ProviderConfigInvalid, match="holds a link"):
        pinned(UNKNOWN_DIGEST).copy_tree()


@pytest.mark.parametrize("digest", [None, "", "ABC", "g" * 64, "A" * 64, "0" * 63, 7])
def test_a_model_file_needs_a_well_formed_pin(tmp_path: Path, digest: object) -> None:
    # Built as a spec, past the registry's own shape checks: the loader checks by itself.
    settings: dict[str, Any] = {"modelPath": str(tmp_path / "m.skops")}
    if digest is not None:
        settings["modelSha256"] = digest
    spec = ProviderSpec(
        "m",
        "1.0.0",
        ModelType.CLASSIFICATION,
        Provider.SCIKIT_LEARN,
        settings=settings,
        grants=GrantSettings(model_roots=(tmp_path,)),
    )
    with pytest.raises(ProviderConfigInvalid, match="modelSha256"):
        SklearnProvider(spec)
