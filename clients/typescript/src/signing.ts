/**
 * Command signatures (docs/security.md): two Kafka headers, `signer` (the actor's name in the
 * operator's actors file) and `signature`: the base64 Ed25519 signature of
 * `"model-registry command v1\n"` followed by the 32 raw bytes of the SHA-256 of the exact
 * value bytes sent.
 */
import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";

const CONTEXT = Buffer.from("model-registry command v1\n");
// PKCS#8 DER prefix of a raw 32-byte Ed25519 seed (RFC 8410)
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

/** An actor and its private key: what signs every command this client sends. */
export interface Identity {
  readonly actor: string;
  readonly key: KeyObject;
}

/** The identity in a file written by `model-registry identity create ACTOR --out FILE`. */
export function loadIdentity(path: string): Identity {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new Error(
      `the signing identity at ${path} cannot be read: create one with ` +
        "`model-registry identity create ACTOR --out FILE` and have the operator add it",
    );
  }
  const { actor, private_key: raw } = parsed as { actor?: unknown; private_key?: unknown };
  if (typeof actor !== "string" || typeof raw !== "string") {
    throw new Error(`the signing identity at ${path} has no 'actor' and 'private_key'`);
  }
  return { actor, key: keyFromSeed(Buffer.from(raw, "base64")) };
}

/** An Ed25519 private key from its raw 32-byte seed. */
export function keyFromSeed(seed: Buffer): KeyObject {
  if (seed.length !== 32) throw new Error("an Ed25519 private key is 32 bytes");
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: "der",
    type: "pkcs8",
  });
}

/** The signature headers of a command whose exact bytes are `value`. */
export function signatureHeaders(identity: Identity, value: Buffer): Record<string, string> {
  const digest = createHash("sha256").update(value).digest();
  const signature = sign(null, Buffer.concat([CONTEXT, digest]), identity.key);
  return { signer: identity.actor, signature: signature.toString("base64") };
}
