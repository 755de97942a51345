"""docker-compose.yml stays true: it parses, Kafka runs in KRaft mode, and every registry
service's command is a real ``model-registry`` subcommand with real options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_true() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any("zookeeper" in name for name in services)
    registry_services = {name: s for name, s in services.items() if name != "kafka"}
    assert set(registry_services) == {
        "decider",
        "projector",
        "predictor",
        "monitor",
        "guard",
        "api",
    }
    for name, service in registry_services.items():
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert "healthz" in " ".join(service["healthcheck"]["test"]), (
            f"{name} has no progress-based health check"
        )
        argv = [*service["command"], "--help"]
        out = subprocess.run(
            [sys.executable, "-m", "model_registry", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, (
            f"{name}: `model-registry {' '.join(argv)}` failed: {out.stderr}"
        )
    assert (ROOT / "Dockerfile").exists()
    for port in (p for s in services.values() for p in s.get("ports", [])):
        assert port.startswith("127.0.0.1:"), f"{port} is published beyond loopback"
