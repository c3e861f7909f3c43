/**
 * pino JSON lines on stdout: lifecycle events at info, one line per stanza handled at debug, and at trace every
 * stanza as it crosses the component link (serialized XML, for protocol debugging; it carries payloads).
 * Secrets are never passed to the logger; the redaction and the error serializer below are a second line of
 * defence: an error keeps its type, message, stack, code and cause, nothing else (ioredis attaches the command
 * and its arguments, which can hold a password), and a Redis URL in a message is masked.
 */
import { type Logger, pino } from "pino";

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "xmpp-client-proxy" },
      redact: {
        paths: ["password", "*.password", "secret", "*.secret", "jatKeys", "*.jatKeys"],
        censor: "[secret]",
      },
      serializers: { err: serializeError },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

export interface SerializedError {
  type: string;
  message: string;
  stack?: string;
  code?: string;
  condition?: string;
  cause?: SerializedError;
}

const mask = (text: string) => text.replace(/rediss?:\/\/\S*/g, "<redis-url>");

/** Only the fields that help, from an Error or anything thrown. */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { type: typeof err, message: mask(String(err)) };
  const { code, condition } = err as Error & { code?: unknown; condition?: unknown };
  const out: SerializedError = { type: err.constructor?.name ?? "Error", message: mask(err.message) };
  if (err.stack) out.stack = mask(err.stack);
  if (typeof code === "string") out.code = code;
  if (typeof condition === "string") out.condition = condition;
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1);
  return out;
}
