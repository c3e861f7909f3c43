/**
 * pino JSON lines on stdout: lifecycle events at info, one line per request at debug.
 * Secrets are never passed to the logger; the redaction below is a second line of defence.
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
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
