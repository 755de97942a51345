"""The HTTP API's ``GET /models/{id}`` against a bare Starlette endpoint reading the same row.

    python bench/api.py [--models 1000] [--seconds 10] [--concurrency 16] [--quick]
                        [--json out.json] [--bootstrap HOST:PORT]

Builds a projection of N models (events on the broker, applied by the real projector, as
bench/reads.py does), then serves it two ways, each in its own process, one uvicorn worker on
127.0.0.1 (the same uvicorn, the same h11 protocol, the default asyncio loop, no access log):

- ``api``: ``model-registry api`` itself, the service's CLI (FastAPI ``create_app`` in
  ``ApiServer``), with a valid bearer token for the admin actor. Each request is
  authenticated (the token hashed, compared with the tokens file's hashes), read through
  ``ProjectionReader.get_model`` (``SELECT <model columns> FROM models WHERE model_id = ?``
  on one sqlite3 connection), turned into the model's JSON (``ModelView.to_dict``: config,
  revision, A/B state, aliases) by orjson, with an ``ETag``; the request passes the body
  limits middleware.
- ``bare``: a Starlette app with one route, ``/models/{model_id}``: the same query on the
  same projection file with one sqlite3 connection, the row as a dict of its columns,
  ``JSONResponse`` (stdlib json). No authentication, no middleware, no validation.

The load comes from this process: C keep-alive HTTP/1.1 connections (a minimal asyncio
client, cheaper than httpx so that the client is not what is measured), each sending the
next request when the last answer is read, for random ids of the N models. Per side:
a warm-up, then ``--seconds`` of load (full runs: two rounds each, alternating bare, api,
bare, api); requests/s and latency p50/p99 under that load; then p50/p99 with a single
connection (the unloaded latency). Both sides run in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_broker_option,
    bootstrap,
    machine,
    peak_rss_mb,
    percentile,
    results_path,
    use_broker,
    write_figures,
)

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- the bare side


def serve_bare(db: str) -> None:
    """The baseline server (run as ``bench/api.py --serve-bare DB``): prints its port."""
    import sqlite3

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from projections.views import MODEL_COLUMNS

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    query = f"SELECT {MODEL_COLUMNS} FROM models WHERE model_id = ?"
    names = [d[0] for d in conn.execute(query, ("",)).description]

    async def get_model(request: Request) -> Response:
        row = conn.execute(query, (request.path_params["model_id"],)).fetchone()
        if row is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return JSONResponse(dict(zip(names, row, strict=True)))

    app = Starlette(routes=[Route("/models/{model_id}", get_model)])
    # IPPROTO_TCP, as uvicorn's own bind does: asyncio then turns Nagle off on the connections
    # it accepts (it does so only for sockets whose proto is TCP)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False, lifespan="off"
    )
    print(f"bare: http://{HOST}:{sock.getsockname()[1]}/", flush=True)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    port: int
    headers: str = ""
    errors: Path | None = None

    def peak_rss_mb(self) -> float | None:
        """The process's peak resident memory (VmHWM), while it still runs."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _start(name: str, argv: list[str], env: dict[str, str], marker: str, tmp: Path) -> Server:
    """Start a server process and read its address from the line starting with ``marker``."""
    errors = tmp / f"{name}.stderr"
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=errors.open("w"), text=True, env=env
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(marker):
            port = int(line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            return Server(name, proc, port, errors=errors)
    proc.kill()
    raise RuntimeError(f"the {name} server did not start: {errors.read_text()[-2000:]}")


# --------------------------------------------------------------------------- the client


@dataclass
class Load:
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _requests(ids: list[str], headers: str) -> list[bytes]:
    return [f"GET /models/{mid} HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n".encode() for mid in ids]


async def _connection(port: int, requests: list[bytes], until: float, load: Load) -> None:
    """One keep-alive connection: request, read the whole answer, next; until ``until``
    (``time.perf_counter``)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    rng = random.Random()
    done = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(rng.choice(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"no Content-Length in {head[:300]!r}")
            length = int(lowered[at + 17 : lowered.index(b"\r\n", at + 2)])
            await reader.readexactly(length)
            load.latencies_ms.append((time.perf_counter() - started) * 1000)
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    load.requests += done


async def load(
    server: Server,
    ids: list[str],
    *,
    seconds: float,
    connections: int,
) -> Load:
    """``connections`` connections for ``seconds``."""
    requests = _requests(ids, server.headers)
    result = Load()
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(server.port, requests, started + seconds, result) for _ in range(connections))
    )
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- the run


def _model_ids(n: int) -> list[str]:
    return [f"model-{i:08d}" for i in range(n)]


async def _projection(settings: Any, n: int) -> int:
    """N models on the broker, applied by the real projector into the settings' projection."""
    from bench.events import produce
    from bench.reads import model_events
    from projections.projector import rebuild
    from projections.schema import projection_path
    from registry.infra.kafka.topics import ensure_topics

    await ensure_topics(settings)
    produced = await produce(
        settings.bootstrap_servers, settings.topic("registry.events"), model_events(n)
    )
    await rebuild(settings, projection_path(settings))
    return produced


async def _check(api: Server, bare: Server, model_id: str) -> None:
    """Both sides answer the same model; the API refuses a request without the token."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as c:
        anonymous = await c.get(f"http://{HOST}:{api.port}/models/{model_id}")
        assert anonymous.status_code == 401, anonymous.text
        token = api.headers.split(": ", 1)[1].strip()
        a = await c.get(
            f"http://{HOST}:{api.port}/models/{model_id}",
            headers={"Authorization": token},
        )
        b = await c.get(f"http://{HOST}:{bare.port}/models/{model_id}")
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    api_view, row = a.json(), b.json()
    assert api_view["config"]["id"] == row["model_id"] == model_id
    assert api_view["revision"] == row["revision"]


async def main_async(n: int, seconds: float, rounds: int, connections: int, out: Path) -> None:
    from model_registry.api.tokens import TokenStore
    from registry.infra.identity import ensure_local
    from registry.infra.settings import Settings

    broker, bs = bootstrap()
    api: Server | None = None
    bare: Server | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            prefix = f"api{int(time.time())}."
            settings = Settings(
                bootstrap_servers=bs, topic_prefix=prefix, data_dir=tmp, fetch_max_wait_ms=500
            )
            identity = ensure_local(settings)  # the admin of the actors file
            _, token = TokenStore(settings.api_tokens_file).create(identity.actor)
            produced = await _projection(settings, n)

            from projections.schema import projection_path

            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": bs,
                "REGISTRY_TOPIC_PREFIX": prefix,
                "REGISTRY_DATA_DIR": str(tmp),
            }
            cli = str(Path(sys.executable).with_name("model-registry"))
            api = _start("api", [cli, "api", "--port", "0"], env, "API and console: http", tmp)
            api.headers = f"Authorization: Bearer {token}\r\n"
            bare = _start(
                "bare",
                [sys.executable, __file__, "--serve-bare", str(projection_path(settings))],
                env,
                "bare: http",
                tmp,
            )
            ids = _model_ids(n)
            await _check(api, bare, ids[0])

            loads: dict[str, list[Load]] = {"bare": [], "api": []}
            warm = min(2.0, seconds / 3)
            for server in (bare, api):
                await load(server, ids, seconds=warm, connections=connections)
            for _ in range(rounds):
                for server in (bare, api):
                    loads[server.name].append(
                        await load(server, ids, seconds=seconds, connections=connections)
                    )
            single = {
                s.name: await load(s, ids, seconds=seconds, connections=1) for s in (bare, api)
            }
            rss = {s.name: s.peak_rss_mb() for s in (bare, api)}
    finally:
        for running in (api, bare):
            if running is not None:
                running.stop()
        if broker is not None:
            broker.stop()

    def rate(name: str) -> float:
        return sum(x.requests for x in loads[name]) / sum(x.seconds for x in loads[name])

    def lat(name: str, q: float) -> float:
        return round(percentile([v for x in loads[name] for v in x.latencies_ms], q), 2)

    api_rate, bare_rate = rate("api"), rate("bare")
    figures = {
        "models": n,
        "events": produced,
        "concurrency": connections,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "api_get_model_per_s": round(api_rate),
        "bare_get_model_per_s": round(bare_rate),
        "ratio_to_bare": round(api_rate / bare_rate, 3),
        "api_p50_ms": lat("api", 50),
        "api_p99_ms": lat("api", 99),
        "bare_p50_ms": lat("bare", 50),
        "bare_p99_ms": lat("bare", 99),
        "api_one_connection_per_s": round(single["api"].per_s),
        "bare_one_connection_per_s": round(single["bare"].per_s),
        "api_one_connection_p50_ms": round(percentile(single["api"].latencies_ms, 50), 2),
        "api_one_connection_p99_ms": round(percentile(single["api"].latencies_ms, 99), 2),
        "bare_one_connection_p50_ms": round(percentile(single["bare"].latencies_ms, 50), 2),
        "bare_one_connection_p99_ms": round(percentile(single["bare"].latencies_ms, 99), 2),
        "api_server_peak_rss_mb": rss["api"],
        "bare_server_peak_rss_mb": rss["bare"],
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    print(
        f"api: GET /models/{{id}} over {n:,} models, {connections} connections, "
        f"{rounds} x {seconds:g} s per side, one uvicorn worker each"
    )
    print(
        f"  bare Starlette + sqlite3 {bare_rate:>9,.0f}/s  p50 {figures['bare_p50_ms']} ms  "
        f"p99 {figures['bare_p99_ms']} ms  (the ceiling)"
    )
    print(
        f"  model-registry api       {api_rate:>9,.0f}/s  p50 {figures['api_p50_ms']} ms  "
        f"p99 {figures['api_p99_ms']} ms  ratio {api_rate / bare_rate:.2f}"
    )
    print(
        f"  one connection: bare p50 {figures['bare_one_connection_p50_ms']} ms, "
        f"p99 {figures['bare_one_connection_p99_ms']} ms; api p50 "
        f"{figures['api_one_connection_p50_ms']} ms, p99 {figures['api_one_connection_p99_ms']} ms"
    )
    print(
        f"  peak RSS: api server {rss['api']} MB, bare server {rss['bare']} MB, "
        f"client {figures['peak_rss_mb']} MB"
    )
    write_figures(out, figures)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bare":
        serve_bare(sys.argv[2])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", type=int, default=1_000)
    ap.add_argument("--seconds", type=float, default=10.0, help="of load per round and side")
    ap.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--quick", action="store_true", help="200 models, 1 s per side: a smoke run")
    ap.add_argument("--json", type=Path, help="default: bench/results/api[.kafka].json")
    add_broker_option(ap)
    args = ap.parse_args()
    use_broker(args)
    out = args.json or results_path("api")
    if args.quick:
        asyncio.run(main_async(200, 1.0, 1, 8, out))
    else:
        asyncio.run(main_async(args.models, args.seconds, 2, args.concurrency, out))


if __name__ == "__main__":
    main()
