/**
 * The registry over Kafka (kafkajs): signed commands answered by their reply, prediction
 * requests answered by their result.
 *
 * - Every command gets an `id` (its idempotency key: a resend with the same id is answered
 *   `duplicate`, nothing is applied twice) and the client's actor, is checked against the
 *   contract's schema, signed with the client's identity, and sent to `registry.commands`
 *   keyed by its model id; `send()` resolves with the decider's reply keyed by that id.
 * - A prediction request is checked, sent to `predictions.requests` keyed by its unit id,
 *   and `predict()` resolves with the `PredictionResult` whose `request_id` is its id.
 * - Replies and results are read by consumers of their own (a fresh group per client, no
 *   committed offsets) positioned at the end of their topics *before* anything is sent, so
 *   no answer can be missed.
 * - Fetch waits: `fetchMaxWaitMs` (default 100 ms). kafkajs's default (5 s) is what a
 *   consumer waits when no record arrives; Apache Kafka answers a waiting fetch as soon as a
 *   record arrives, the embedded broker only when the wait is over, so a long wait costs
 *   every answer its length there (about 1.8 s a message with kafkajs's defaults).
 */
import { randomUUID } from "node:crypto";
import {
  Kafka,
  logLevel,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type Producer,
} from "kafkajs";

import type {
  Command,
  CommandReply,
  PredictionOutcome,
  PredictionRequest,
  PredictionResult,
  RejectionInfo,
} from "./generated/contract.js";
import { signatureHeaders, type Identity } from "./signing.js";
import { check } from "./validate.js";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A command as a caller writes it: `id` and `actor` are filled in when left out. */
export type CommandInput = DistributiveOmit<Command, "id" | "actor"> & {
  id?: string;
  actor?: string;
};

/** A prediction request as a caller writes it: `id` and `type` are filled in when left out. */
export type PredictionInput = Omit<PredictionRequest, "id" | "type"> & {
  id?: string;
};

export interface RegistryClientOptions {
  /** Bootstrap servers, e.g. `["127.0.0.1:9092"]`. */
  readonly brokers: readonly string[];
  /** Who signs the commands (`loadIdentity(path)`); its actor is every command's `actor`. */
  readonly identity: Identity;
  /** The registry's topic prefix (`REGISTRY_TOPIC_PREFIX`), default none. */
  readonly topicPrefix?: string;
  readonly clientId?: string;
  /** How long `send()` waits for a reply (default 30 s). */
  readonly replyTimeoutMs?: number;
  /** How long `predict()` waits for a result (default 30 s). */
  readonly resultTimeoutMs?: number;
  /** The consumers' fetch wait (default 100 ms; see the module's comment). */
  readonly fetchMaxWaitMs?: number;
}

/** A command the registry refused: its stable `code`, the message, the field at fault. */
export class CommandRejected extends Error {
  override readonly name = "CommandRejected";
  readonly code: RejectionInfo["code"];
  readonly field: string | undefined;
  constructor(readonly reply: CommandReply) {
    const rejection = reply.rejection ?? { code: "InvalidCommand", message: "rejected" };
    super(`${rejection.code}: ${rejection.message}`);
    this.code = rejection.code;
    this.field = rejection.field;
  }
}

/** No answer in time (the command or request may still be applied or answered later). */
export class AnswerTimeout extends Error {
  override readonly name = "AnswerTimeout";
  constructor(
    readonly what: "reply" | "result",
    readonly id: string,
    readonly afterMs: number,
  ) {
    super(`no ${what} to ${id} within ${afterMs} ms`);
  }
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

class Answers<T> {
  private readonly waiting = new Map<string, Waiter<T>>();

  constructor(
    private readonly what: "reply" | "result",
    private readonly timeoutMs: number,
  ) {}

  wait(id: string): Promise<T> {
    if (this.waiting.has(id)) throw new Error(`already waiting for the ${this.what} to ${id}`);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new AnswerTimeout(this.what, id, this.timeoutMs));
      }, this.timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
  }

  answer(id: string, value: T): void {
    const waiter = this.waiting.get(id);
    if (waiter === undefined) return; // someone else's, or already answered (a redelivery)
    clearTimeout(waiter.timer);
    this.waiting.delete(id);
    waiter.resolve(value);
  }

  cancel(id: string): void {
    const waiter = this.waiting.get(id);
    if (waiter !== undefined) clearTimeout(waiter.timer);
    this.waiting.delete(id);
  }

  failAll(error: Error): void {
    for (const [id, waiter] of this.waiting) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this.waiting.delete(id);
    }
  }
}

/** The registry's Kafka client. `await client.connect()` before use; `disconnect()` after. */
export class RegistryClient {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly consumers: Consumer[] = [];
  private readonly replies: Answers<CommandReply>;
  private readonly results: Answers<PredictionResult>;
  private readonly prefix: string;
  private readonly fetchMaxWaitMs: number;
  private connected = false;

  constructor(private readonly options: RegistryClientOptions) {
    this.prefix = options.topicPrefix ?? "";
    this.fetchMaxWaitMs = options.fetchMaxWaitMs ?? 100;
    this.kafka = new Kafka({
      clientId: options.clientId ?? "model-registry-ts",
      brokers: [...options.brokers],
      logLevel: logLevel.ERROR,
      retry: { retries: 8, initialRetryTime: 100 },
    });
    this.producer = this.kafka.producer({ allowAutoTopicCreation: false });
    this.admin = this.kafka.admin();
    this.replies = new Answers("reply", options.replyTimeoutMs ?? 30_000);
    this.results = new Answers("result", options.resultTimeoutMs ?? 30_000);
  }

  /** The actor every command of this client is signed by. */
  get actor(): string {
    return this.options.identity.actor;
  }

  private topic(name: string): string {
    return this.prefix + name;
  }

  async connect(): Promise<void> {
    if (this.connected) return;
    await Promise.all([this.producer.connect(), this.admin.connect()]);
    await this.follow(this.topic("registry.replies"), (value) => {
      const reply = value as Partial<CommandReply>;
      if (typeof reply.command_id === "string") {
        this.replies.answer(reply.command_id, reply as CommandReply);
      }
    });
    await this.follow(this.topic("predictions.results"), (value) => {
      const result = value as Partial<PredictionResult>;
      if (typeof result.request_id === "string") {
        this.results.answer(result.request_id, result as PredictionResult);
      }
    });
    this.connected = true;
  }

  /** Read `topic` from its current end on, handing each JSON value to `onValue`. */
  private async follow(topic: string, onValue: (value: unknown) => void): Promise<void> {
    const ends = await this.admin.fetchTopicOffsets(topic);
    const consumer = this.kafka.consumer({
      groupId: `model-registry-ts-${randomUUID()}`,
      maxWaitTimeInMs: this.fetchMaxWaitMs,
      minBytes: 1,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      allowAutoTopicCreation: false,
    });
    this.consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    const joined = new Promise<void>((resolve) => {
      const off = consumer.on(consumer.events.GROUP_JOIN, () => {
        off();
        resolve();
      });
    });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }: EachBatchPayload) => {
        for (const message of batch.messages) {
          if (message.value === null) continue;
          let value: unknown;
          try {
            value = JSON.parse(message.value.toString("utf8"));
          } catch {
            continue; // not ours to judge: the registry dead-letters what it cannot read
          }
          onValue(value);
        }
      },
    });
    for (const { partition, offset } of ends) consumer.seek({ topic, partition, offset });
    await joined;
  }

  async disconnect(): Promise<void> {
    const closed = new Error("the client was disconnected");
    this.replies.failAll(closed);
    this.results.failAll(closed);
    await Promise.allSettled(this.consumers.map((c) => c.disconnect()));
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect()]);
    this.connected = false;
  }

  private ready(): void {
    if (!this.connected) throw new Error("call connect() first");
  }

  /** The command as it will be sent: an id, the client's actor; checked by the schema. */
  prepare(input: CommandInput): Command {
    const command = { ...input, id: input.id ?? randomUUID(), actor: input.actor ?? this.actor };
    check("Command.json", command);
    return command as Command;
  }

  /** Send a command and resolve with its reply (any outcome). */
  async send(input: CommandInput): Promise<CommandReply> {
    this.ready();
    const command = this.prepare(input);
    const value = Buffer.from(JSON.stringify(command));
    const answer = this.replies.wait(command.id);
    try {
      await this.producer.send({
        topic: this.topic("registry.commands"),
        acks: -1,
        messages: [
          {
            key: command.model_id ?? "__registry__",
            value,
            headers: { type: command.type, ...signatureHeaders(this.options.identity, value) },
          },
        ],
      });
    } catch (error) {
      this.replies.cancel(command.id);
      throw error;
    }
    return answer;
  }

  /** Send a command; resolve with its reply when accepted (or a duplicate), else throw
   *  `CommandRejected` with the rejection's code, message and field. */
  async execute(input: CommandInput): Promise<CommandReply> {
    const reply = await this.send(input);
    if (reply.outcome === "rejected") throw new CommandRejected(reply);
    return reply;
  }

  /** The request as it will be sent: an id and its type; checked by the schema. */
  prepareRequest(input: PredictionInput): PredictionRequest {
    const request = { type: "PredictionRequest" as const, ...input, id: input.id ?? randomUUID() };
    check("predictions/PredictionRequest.json", request);
    return request;
  }

  /** Ask for one prediction and resolve with its result (which may carry an `error`). */
  async predict(input: PredictionInput): Promise<PredictionResult> {
    const [result] = await this.predictMany([input]);
    if (result === undefined) throw new Error("no result");
    return result;
  }

  /** Ask for many predictions at once (sent in batches) and resolve with their results,
   *  in the order of the requests. */
  async predictMany(inputs: readonly PredictionInput[], batchSize = 500): Promise<PredictionResult[]> {
    this.ready();
    const requests = inputs.map((input) => this.prepareRequest(input));
    const ids = new Set(requests.map((request) => request.id));
    if (ids.size !== requests.length) throw new Error("two requests share an id");
    const answers = requests.map((request) => this.results.wait(request.id));
    try {
      for (let start = 0; start < requests.length; start += batchSize) {
        await this.producer.send({
          topic: this.topic("predictions.requests"),
          acks: -1,
          messages: requests.slice(start, start + batchSize).map((request) => ({
            key: request.unit_id ?? request.id,
            value: JSON.stringify(request),
            headers: { type: "PredictionRequest" },
          })),
        });
      }
    } catch (error) {
      for (const request of requests) this.results.cancel(request.id);
      throw error;
    }
    return Promise.all(answers);
  }

  /** Report what really happened for a request (the monitor scores the variants by it). */
  async recordOutcome(requestId: string, actual: PredictionOutcome["actual"]): Promise<void> {
    this.ready();
    const outcome: PredictionOutcome = {
      type: "PredictionOutcome",
      id: randomUUID(),
      request_id: requestId,
      actual,
    };
    check("predictions/PredictionOutcome.json", outcome);
    await this.producer.send({
      topic: this.topic("predictions.outcomes"),
      acks: -1,
      messages: [{ key: requestId, value: JSON.stringify(outcome), headers: { type: outcome.type } }],
    });
  }
}
