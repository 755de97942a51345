/**
 * The TypeScript client against a live registry (the Python `up`, started here): register,
 * conflict, duplicate, refused-before-sending, A/B start, 2,000 predictions (variant shares
 * and stickiness), promote, and the audit read back through the HTTP API.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  CommandRejected,
  ContractError,
  RegistryClient,
  RegistryHttpClient,
  isValid,
  loadIdentity,
  type CommandInput,
  type ModelConfig,
  type PredictionResult,
} from "../src/index.js";
import { startStack, type Stack } from "./stack.js";

const CHAMPION = "lead-scoring-v1";
const CHALLENGER = "lead-scoring-v2";
const SHARE = 30;

function model(id: string, version: string, fn: string): ModelConfig {
  return {
    id,
    name: `Lead scoring (${fn})`,
    version,
    type: "classification",
    provider: "custom",
    status: "testing",
    providerConfig: { provider: "custom", callable: `tests.consumers.custom_models:${fn}` },
  };
}

describe("the TypeScript client against a live registry", { timeout: 600_000 }, () => {
  let stack: Stack;
  let client: RegistryClient;
  let http: RegistryHttpClient;

  before(async () => {
    stack = await startStack();
    client = new RegistryClient({
      brokers: stack.brokers,
      topicPrefix: stack.topicPrefix,
      identity: loadIdentity(stack.identityFile),
      replyTimeoutMs: 60_000,
      resultTimeoutMs: 120_000,
    });
    await client.connect();
    http = new RegistryHttpClient({ baseUrl: stack.apiUrl, token: stack.token });
  });

  after(async () => {
    await client?.disconnect();
    await stack?.stop();
  });

  it("registers a model: accepted, revision 1, the event's position", async () => {
    const reply = await client.execute({
      type: "RegisterModel",
      model_id: CHAMPION,
      payload: model(CHAMPION, "1.0.0", "score"),
    });
    assert.equal(reply.outcome, "accepted");
    assert.equal(reply.revision, 1);
    assert.equal(reply.command_type, "RegisterModel");
    assert.equal(reply.events[0]?.type, "ModelRegistered");
    assert.ok(isValid("CommandReply.json", reply), "the reply is what the schema says");
    await client.execute({
      type: "RegisterModel",
      model_id: CHALLENGER,
      payload: model(CHALLENGER, "2.0.0", "score_v2"),
    });
  });

  it("a conflict is a typed rejection, with the current revision", async () => {
    const other = { ...model(CHAMPION, "1.0.0", "score"), name: "Another model" };
    await assert.rejects(
      client.execute({ type: "RegisterModel", model_id: CHAMPION, payload: other }),
      (error: unknown) => error instanceof CommandRejected && error.code === "ModelAlreadyRegistered",
    );
    const stale = await client.send({
      type: "ChangeStatus",
      model_id: CHAMPION,
      expected_revision: 0,
      payload: { status: "active" },
    });
    assert.equal(stale.outcome, "rejected");
    assert.equal(stale.rejection?.code, "VersionConflict");
    assert.equal(stale.revision, 1, "a rejection says the model's current revision");
    assert.equal(stale.model_id, CHAMPION);
  });

  it("a resent command is answered duplicate, with the first time's events", async () => {
    const command: CommandInput = {
      id: randomUUID(),
      type: "ChangeStatus",
      model_id: CHAMPION,
      expected_revision: 1,
      payload: { status: "active", reason: "validated offline" },
    };
    const first = await client.execute(command);
    const again = await client.send(command);
    assert.equal(first.outcome, "accepted");
    assert.equal(again.outcome, "duplicate");
    assert.deepEqual(again.events, first.events);
    assert.equal(again.revision, 2);
  });

  it("refuses what the contract refuses before sending it", () => {
    const misspelt = {
      type: "RegisterModel",
      model_id: "typo",
      payload: {
        ...model("typo", "1.0.0", "score"),
        providerConfig: { provider: "custom", callabel: "tests.consumers.custom_models:score" },
      },
    } as unknown as CommandInput;
    assert.throws(() => client.prepare(misspelt), (error: unknown) => {
      assert.ok(error instanceof ContractError);
      assert.match(error.message, /callabel/);
      return true;
    });
    assert.throws(() => client.prepare({ type: "ChangeStatus", model_id: "m", payload: { status: "flying" } } as unknown as CommandInput), ContractError);
  });

  it("starts an A/B test and routes 2,000 predictions: shares and stickiness", async () => {
    await client.execute({ type: "ChangeStatus", model_id: CHALLENGER, payload: { status: "active" } });
    const started = await client.execute({
      type: "StartABTest",
      model_id: CHALLENGER,
      payload: { championModelId: CHAMPION, trafficPercentage: SHARE },
    });
    assert.equal(started.events[0]?.type, "ABTestStarted");
    await sleep(500); // the prediction consumer's view follows the log
    const units = 400;
    const inputs = Array.from({ length: 2000 }, (_, i) => ({
      model_id: CHAMPION,
      unit_id: `lead-${i % units}`,
      input: { visits: i % 9, emails_opened: i % 4 },
    }));
    const results: PredictionResult[] = await client.predictMany(inputs);
    assert.equal(results.length, 2000);
    const byUnit = new Map<string, Set<string>>();
    for (const result of results) {
      assert.equal(result.error, undefined, JSON.stringify(result.error));
      assert.ok(isValid("predictions/PredictionResult.json", result));
      assert.match(result.occurred_at, /Z$/);
      const seen = byUnit.get(result.unit_id ?? "") ?? new Set<string>();
      seen.add(result.variant);
      byUnit.set(result.unit_id ?? "", seen);
      assert.equal(result.served_model_id, result.variant === "challenger" ? CHALLENGER : CHAMPION);
    }
    assert.equal(byUnit.size, units);
    for (const [unit, variants] of byUnit) assert.equal(variants.size, 1, `${unit} kept one variant`);
    const challengerUnits = [...byUnit.values()].filter((v) => v.has("challenger")).length;
    const share = (100 * challengerUnits) / units;
    // 400 units, p = 0.3: the standard deviation is 2.3 points; 8 points is 3.5 of them
    assert.ok(Math.abs(share - SHARE) < 8, `challenger share ${share}%`);
  });

  it("promotes the challenger: the champion's id is served by it", async () => {
    const promoted = await client.execute({
      type: "PromoteChallenger",
      model_id: CHALLENGER,
      payload: { reason: "better in the A/B test" },
    });
    assert.equal(promoted.events[0]?.type, "ChallengerPromoted");
    let result: PredictionResult | undefined;
    for (let i = 0; i < 50; i++) {
      result = await client.predict({ model_id: CHAMPION, unit_id: "lead-1", input: { visits: 5 } });
      if (result.served_model_id === CHALLENGER && result.variant === "none") break;
      await sleep(100);
    }
    assert.equal(result?.served_model_id, CHALLENGER);
    assert.equal(result?.resolved_model_id, CHALLENGER);
    assert.equal(result?.requested_model_id, CHAMPION);
  });

  it("reads the audit through the HTTP API: every change, by whom, in order", async () => {
    const wanted = ["ModelRegistered", "ModelStatusChanged", "ABTestStarted", "ChallengerPromoted"];
    let types: string[] = [];
    let seen = "";
    for (let i = 0; i < 100 && !wanted.every((t) => types.includes(t)); i++) {
      const entries = await http.audit({ model: CHALLENGER });
      seen = JSON.stringify(entries.slice(0, 2));
      types = entries.flatMap((e) => (e.event ? [e.event.type] : []));
      if (!wanted.every((t) => types.includes(t))) await sleep(100);
      else {
        for (const entry of entries) {
          assert.equal(entry.event?.actor, "crm-leads");
          assert.ok(entry.event && isValid("Event.json", entry.event), "an event of the contract");
        }
      }
    }
    assert.deepEqual(
      types.filter((t) => wanted.includes(t)),
      ["ModelRegistered", "ModelStatusChanged", "ABTestStarted", "ChallengerPromoted"],
      seen,
    );
    const champion = await http.getModel(CHAMPION);
    assert.equal(champion.config.status, "deprecated");
    assert.equal(champion.servedBy, CHALLENGER);
  });
});
