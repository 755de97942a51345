/**
 * A small client of the registry's HTTP API (docs/api.md): bearer token, JSON bodies
 * (camelCase, as the API's OpenAPI document says), problems (`application/problem+json`)
 * raised as `ApiProblem` with their stable `code`.
 */
import type { Event, ModelConfig, Status } from "./generated/contract.js";

export interface HttpClientOptions {
  /** e.g. `http://127.0.0.1:8765` (printed by `model-registry up`, kept in runtime.json). */
  readonly baseUrl: string;
  /** A token from `model-registry api token create ACTOR`. */
  readonly token: string;
  readonly timeoutMs?: number;
}

/** An error answer of the API: HTTP status, stable `code`, detail and the field at fault. */
export class ApiProblem extends Error {
  override readonly name = "ApiProblem";
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly field?: string,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

/** What a write answers. */
export interface WriteAnswer {
  readonly commandId: string;
  readonly modelId: string;
  readonly outcome: "accepted" | "duplicate";
  readonly revision: number;
  readonly events: readonly {
    readonly id: string;
    readonly type: string;
    readonly revision: number;
    readonly partition: number;
    readonly offset: number;
  }[];
}

/** One model as `GET /models/{id}` answers it: its configuration (credentials as
 *  references only) and the projection's bookkeeping. */
export interface ModelView {
  readonly config: ModelConfig;
  readonly revision: number;
  readonly registeredAt: string;
  readonly updatedAt: string;
  readonly aliases: readonly string[];
  /** The model that answers for this one since a promotion. */
  readonly servedBy?: string | null;
  /** The model this one replaced by a promotion. */
  readonly replaces?: string | null;
  readonly abTest?: {
    readonly testId: string;
    readonly championModelId: string;
    readonly trafficPercentage?: number | null;
    readonly routing?: string | null;
    readonly splitVersion?: number | null;
    readonly startedAt?: string | null;
    readonly mode: string;
    readonly guardrails?: Readonly<Record<string, unknown>> | null;
  } | null;
  readonly lastPosition: { readonly partition: number; readonly offset: number };
}

/** One entry of the audit log (`GET /audit`): where the event is, and the event in its
 *  wire form (or why it cannot be read). */
export interface AuditEntry {
  readonly partition: number;
  readonly offset: number;
  /** The record's broker timestamp (ms). */
  readonly timestamp: number;
  /** Whether the projection applied it (false: refused as not linked to the chain). */
  readonly applied?: boolean;
  readonly event?: Event;
  readonly error?: string;
}

export interface AuditFilter {
  readonly model?: string;
  readonly type?: string;
  readonly actor?: string;
  readonly since?: string;
  readonly until?: string;
  readonly limit?: number;
}

export interface WriteOptions {
  /** The command id is derived from your actor and this key: a retry is the same command. */
  readonly idempotencyKey?: string;
  /** The model's expected revision (`412 VersionConflict` when it is not the current one). */
  readonly ifMatch?: number;
}

export class RegistryHttpClient {
  constructor(private readonly options: HttpClientOptions) {}

  private async call(
    method: string,
    path: string,
    body?: unknown,
    write?: WriteOptions,
  ): Promise<Response> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.options.token}`,
      accept: "application/json",
    };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (write?.idempotencyKey !== undefined) headers["idempotency-key"] = write.idempotencyKey;
    if (write?.ifMatch !== undefined) headers["if-match"] = `"${write.ifMatch}"`;
    const response = await fetch(new URL(path, this.options.baseUrl), {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      redirect: "error",
    });
    if (!response.ok) {
      let problem: { code?: unknown; detail?: unknown; field?: unknown } = {};
      try {
        problem = (await response.json()) as typeof problem;
      } catch {
        // not a problem document
      }
      throw new ApiProblem(
        response.status,
        typeof problem.code === "string" ? problem.code : "HttpError",
        typeof problem.detail === "string" ? problem.detail : response.statusText,
        typeof problem.field === "string" ? problem.field : undefined,
      );
    }
    return response;
  }

  async health(): Promise<{ readonly status: string; readonly [field: string]: unknown }> {
    return (await (await this.call("GET", "/health")).json()) as {
      status: string;
    };
  }

  /** One model by id or alias (`name@label`). */
  async getModel(idOrAlias: string): Promise<ModelView> {
    const response = await this.call("GET", `/models/${encodeURIComponent(idOrAlias)}`);
    return (await response.json()) as ModelView;
  }

  async registerModel(config: ModelConfig, write?: WriteOptions): Promise<WriteAnswer> {
    return (await (await this.call("POST", "/models", config, write)).json()) as WriteAnswer;
  }

  async changeStatus(
    modelId: string,
    status: Status,
    reason?: string,
    write?: WriteOptions,
  ): Promise<WriteAnswer> {
    const path = `/models/${encodeURIComponent(modelId)}/status`;
    const response = await this.call("POST", path, { status, reason }, write);
    return (await response.json()) as WriteAnswer;
  }

  /** The monitor's report of a test (a test id, or a champion's or challenger's id). */
  async abReport(ref: string): Promise<Record<string, unknown>> {
    const path = `/ab-tests/${encodeURIComponent(ref)}/report`;
    return (await (await this.call("GET", path)).json()) as Record<string, unknown>;
  }

  /** The audit log, oldest first, as the API streams it (JSON lines). */
  async audit(filter: AuditFilter = {}): Promise<AuditEntry[]> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filter)) {
      if (value !== undefined) query.set(key, String(value));
    }
    const response = await this.call("GET", `/audit?${query.toString()}`);
    const text = await response.text();
    return text
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as AuditEntry);
  }
}
