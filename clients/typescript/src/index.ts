export type * from "./generated/contract.js";
export {
  AnswerTimeout,
  CommandRejected,
  RegistryClient,
  type CommandInput,
  type PredictionInput,
  type RegistryClientOptions,
} from "./kafka.js";
export {
  ApiProblem,
  RegistryHttpClient,
  type AuditEntry,
  type AuditFilter,
  type HttpClientOptions,
  type ModelView,
  type WriteAnswer,
  type WriteOptions,
} from "./http.js";
export { keyFromSeed, loadIdentity, signatureHeaders, type Identity } from "./signing.js";
export { ContractError, SCHEMA_BASE, check, isValid, validatorOf } from "./validate.js";
