/**
 * Checks messages against the wire contract's JSON Schemas (draft 2020-12) before they are
 * sent, with the ajv set-up that reads them: `ajv/dist/2020` (the draft), the
 * `discriminator` keyword on (the unions pick their member by `type`, providerConfig by
 * `provider`), and ajv-formats (`date-time`).
 */
import Ajv2020 from "ajv/dist/2020.js";
import type { ErrorObject, ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

import { SCHEMAS } from "./generated/schemas.js";

export const SCHEMA_BASE = "https://model-registry.example/schemas/v1/";

/** A message the contract refuses: what is wrong, where (a JSON pointer), for each error. */
export class ContractError extends Error {
  override readonly name = "ContractError";
  constructor(
    readonly schema: string,
    readonly problems: readonly { readonly path: string; readonly message: string }[],
  ) {
    super(
      `not a valid ${schema}: ` +
        problems.map((p) => `${p.path || "/"} ${p.message}`).join("; "),
    );
  }
}

let ajv: InstanceType<typeof Ajv2020.default> | undefined;

function instance(): InstanceType<typeof Ajv2020.default> {
  if (ajv === undefined) {
    ajv = new Ajv2020.default({ discriminator: true, allErrors: true, strict: true });
    addFormats.default(ajv);
    for (const schema of Object.values(SCHEMAS)) ajv.addSchema(schema);
  }
  return ajv;
}

const compiled = new Map<string, ValidateFunction>();

/** The validator of one schema file, e.g. `Command.json`, `predictions/PredictionRequest.json`. */
export function validatorOf(name: string): ValidateFunction {
  let fn = compiled.get(name);
  if (fn === undefined) {
    fn = instance().getSchema(SCHEMA_BASE + name);
    if (fn === undefined) throw new Error(`no schema ${name}`);
    compiled.set(name, fn);
  }
  return fn;
}

function problems(errors: ErrorObject[] | null | undefined): { path: string; message: string }[] {
  return (errors ?? []).map((e) => {
    const extra =
      e.keyword === "additionalProperties"
        ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})`
        : "";
    return { path: e.instancePath, message: `${e.message ?? e.keyword}${extra}` };
  });
}

/** Throws `ContractError` unless `value` is valid against schema `name`. */
export function check(name: string, value: unknown): void {
  const fn = validatorOf(name);
  if (!fn(value)) throw new ContractError(name, problems(fn.errors));
}

/** Whether `value` is valid against schema `name` (no throw). */
export function isValid(name: string, value: unknown): boolean {
  return validatorOf(name)(value) === true;
}
