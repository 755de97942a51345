/**
 * A live registry for the tests: the Python `model-registry up` (the embedded broker, or
 * the Apache Kafka named by KAFKA_BOOTSTRAP_SERVERS, with topics of their own), started
 * in a fresh data dir; a signing identity for the CRM module's actor, added to the actors
 * file the operator (`up`) wrote, and an API token for it.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "../../../..");
const PYTHON = process.env.MODEL_REGISTRY_PYTHON ?? path.join(REPO, ".venv/bin/python");

export interface Stack {
  readonly dataDir: string;
  readonly brokers: string[];
  readonly topicPrefix: string;
  readonly apiUrl: string;
  /** The CRM module's identity file (actor `crm-leads`, roles author and deployer). */
  readonly identityFile: string;
  readonly token: string;
  stop(): Promise<void>;
}

function cli(dataDir: string, env: NodeJS.ProcessEnv, ...args: string[]): string {
  return execFileSync(PYTHON, ["-m", "model_registry", ...args], {
    cwd: REPO,
    env: { ...env, REGISTRY_DATA_DIR: dataDir },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 60_000,
  });
}

export async function startStack(actor = "crm-leads"): Promise<Stack> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "mr-ts-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REGISTRY_DATA_DIR: dataDir,
    REGISTRY_API_PORT: "0",
    REGISTRY_GRANTS_CALLABLES:
      "tests.consumers.custom_models:score,tests.consumers.custom_models:score_v2",
    PYTHONUNBUFFERED: "1",
    PYTHONPATH: REPO,
  };
  if (process.env.KAFKA_BOOTSTRAP_SERVERS) {
    env.REGISTRY_TOPIC_PREFIX = `ts-${randomUUID().slice(0, 8)}.`;
  }
  const logFile = path.join(dataDir, "up.log");
  const out = openSync(logFile, "w");
  const proc: ChildProcess = spawn(PYTHON, ["-m", "model_registry", "up", "--status-every", "0"], {
    cwd: REPO,
    env,
    stdio: ["ignore", out, out],
    detached: true,
  });
  closeSync(out);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.pid === undefined) return;
    process.kill(-proc.pid, "SIGTERM");
    const done = await Promise.race([exited.then(() => true), sleep(60_000).then(() => false)]);
    if (!done) process.kill(-proc.pid, "SIGKILL");
  };
  try {
    const runtimeFile = path.join(dataDir, "runtime.json");
    for (let i = 0; i < 1200; i++) {
      const log = readFileSync(logFile, "utf8");
      if (log.includes("model-registry is up") && existsSync(runtimeFile)) break;
      if (proc.exitCode !== null) throw new Error(`up exited:\n${log.slice(-3000)}`);
      await sleep(100);
    }
    const log = readFileSync(logFile, "utf8");
    if (!log.includes("model-registry is up")) throw new Error(`up did not start:\n${log.slice(-3000)}`);
    const runtime = JSON.parse(readFileSync(runtimeFile, "utf8")) as {
      bootstrap_servers: string;
      topic_prefix: string | null;
      api_port: number;
    };
    // the CRM module's key, and the operator adding it to the actors file
    const identityFile = path.join(dataDir, `${actor}.identity.json`);
    const entry = JSON.parse(cli(dataDir, env, "identity", "create", actor, "--out", identityFile)) as {
      roles: string[];
    };
    entry.roles = ["author", "deployer"];
    const actorsFile = path.join(dataDir, "actors.json");
    const actors = JSON.parse(readFileSync(actorsFile, "utf8")) as { actors: unknown[] };
    actors.actors.push(entry);
    writeFileSync(actorsFile, JSON.stringify(actors, null, 2), { mode: 0o600 });
    const token = cli(dataDir, env, "api", "token", "create", actor).trim();
    return {
      dataDir,
      brokers: runtime.bootstrap_servers.split(","),
      topicPrefix: runtime.topic_prefix ?? "",
      apiUrl: `http://127.0.0.1:${runtime.api_port}`,
      identityFile,
      token,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
