/** The schemas compile in ajv's strict mode, and the generated types match what they say. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { SCHEMAS } from "../src/generated/schemas.js";
import { SCHEMA_BASE, isValid, validatorOf, type Command, type ModelConfig } from "../src/index.js";

describe("the contract's schemas in ajv", () => {
  it("compiles every schema in strict mode", () => {
    const ids = Object.keys(SCHEMAS);
    assert.ok(ids.length >= 35, `${ids.length} schemas`);
    for (const id of ids) validatorOf(id.slice(SCHEMA_BASE.length));
  });

  it("picks a command by its type and a provider config by its provider", () => {
    const payload: ModelConfig = {
      id: "m-1",
      name: "M",
      version: "1.0.0",
      type: "regression",
      provider: "scikit-learn",
      providerConfig: {
        provider: "scikit-learn",
        modelPath: "churn.skops",
        modelSha256: "0".repeat(64),
        explainBaseline: { tenure: 12 },
      },
    };
    const command: Command = { id: "c-1", type: "RegisterModel", model_id: "m-1", payload };
    assert.ok(isValid("Command.json", command));
    assert.ok(!isValid("Command.json", { ...command, id: undefined }), "an id is required");
    const noType: Record<string, unknown> = { ...command };
    delete noType.type;
    assert.ok(!isValid("Command.json", noType), "a type is required");
    const wrong = { ...payload, providerConfig: { provider: "scikit-learn", modelPath: "x" } };
    assert.ok(!isValid("Command.json", { ...command, payload: wrong }), "modelSha256 is required");
    const nulls = { ...command, correlation_id: null };
    assert.ok(!isValid("Command.json", nulls), "absent, never null");
  });
});

describe("the public API", () => {
  it("has no `any` in its declarations", () => {
    const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src");
    const files = readdirSync(dist, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".d.ts"));
    assert.ok(files.includes("index.d.ts") && files.includes(path.join("generated", "contract.d.ts")));
    for (const file of files) {
      const text = readFileSync(path.join(dist, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
      assert.doesNotMatch(text, /\bany\b/, file);
    }
  });
});
