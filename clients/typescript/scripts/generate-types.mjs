// Generates src/generated/contract.ts from the wire contract's JSON Schemas
// (../../schemas/v1, written by `model-registry schemas export`), at build time.
//
// Every file's schema becomes one named type (its title); the shared definitions of
// defs.json become types of their own; the unions (Command, Event, PredictionMessage)
// become TypeScript unions discriminated by `type`. The schemas themselves are copied
// to src/generated/schemas.json for the runtime checks (ajv).
import { compile } from "json-schema-to-typescript";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../../schemas/v1");
const out = path.resolve(here, "../src/generated");

function files(dir) {
  return fs.readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return fs.statSync(p).isDirectory() ? files(p) : [p];
  }).sort();
}

const schemas = files(root).map((p) => JSON.parse(fs.readFileSync(p, "utf8")));
const definitions = {};

// "../defs.json#/$defs/X", "defs.json#/$defs/X", "#/$defs/X" -> "#/definitions/X";
// "commands/RegisterModel.json" -> "#/definitions/RegisterModel"
function local(node) {
  if (Array.isArray(node)) return node.map(local);
  if (node === null || typeof node !== "object") return node;
  if (typeof node.$ref === "string") {
    // a $ref with siblings (a default) would become a copy of the type (Status1...)
    const hash = node.$ref.indexOf("#/$defs/");
    const only = {
      $ref: hash >= 0
        ? `#/definitions/${node.$ref.slice(hash + 8)}`
        : `#/definitions/${path.basename(node.$ref, ".json")}`,
    };
    if (node.description) only.description = node.description;
    return only;
  }
  const copy = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "discriminator" || key === "$schema" || key === "$id") {
      continue;
    } else if (key === "properties") {
      copy.properties = Object.fromEntries(
        Object.entries(value).map(([name, prop]) => [name, anyValue(local(prop))]),
      );
    } else {
      copy[key] = local(value);
    }
  }
  return copy;
}

// a property with no shape at all (a prediction's output) is any JSON value: `unknown`
const SHAPED = ["type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties"];
function anyValue(prop) {
  return SHAPED.some((k) => k in prop) ? prop : { ...prop, tsType: "unknown" };
}

for (const schema of schemas) {
  if (schema.title === "Definitions") {
    for (const [name, def] of Object.entries(schema.$defs)) definitions[name] = local(def);
  } else {
    definitions[schema.title] = local(schema);
  }
}

const ts = await compile(
  { title: "WireContract", type: "object", additionalProperties: false, definitions },
  "WireContract",
  {
    bannerComment:
      "/* Generated from schemas/v1 by scripts/generate-types.mjs: do not edit. */",
    unreachableDefinitions: true,
    additionalProperties: false,
    strictIndexSignatures: true,
    unknownAny: true,
    format: true,
  },
);
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "contract.ts"), ts);
const byId = Object.fromEntries(schemas.map((s) => [s.$id, s]));
fs.writeFileSync(
  path.join(out, "schemas.ts"),
  "/* Generated from schemas/v1 by scripts/generate-types.mjs: do not edit. */\n" +
    `export const SCHEMAS: Record<string, object> = ${JSON.stringify(byId)};\n`,
);
console.log(`generated ${Object.keys(definitions).length} types into ${path.relative(process.cwd(), out)}`);
