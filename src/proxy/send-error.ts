/**
 * Sending answers to requesters: one place that turns an error name into an error stanza from the address
 * the request was sent to.
 */
import type { Element } from "@xmpp/xml";
import type { Metrics } from "../metrics.js";
import { ERRORS, type ErrorName, errorReply } from "../xmpp/errors.js";

export type Send = (stanza: Element) => boolean;

export interface Addressed {
  readonly name: string;
  readonly id: string | undefined;
  /** Who sent the stanza being answered. */
  readonly from: string;
  /** The address it was sent to; the answer comes from it. */
  readonly to: string;
}

export function createAnswerer({ send, domain, metrics }: { send: Send; domain: string; metrics: Metrics }) {
  return function answerError(request: Addressed, error: ErrorName): boolean {
    if (error === "timeout") metrics.timeouts.inc();
    else metrics.rejected.inc({ reason: error });
    return send(errorReply(request, ERRORS[error], domain));
  };
}

export type AnswerError = ReturnType<typeof createAnswerer>;
