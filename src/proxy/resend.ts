/**
 * Sends a pending request again, to the resource the store moved it to. The request is rebuilt from its
 * stored payload with the same id, type and translated `from`, so the implementing client cannot tell it
 * from a first send.
 */
import type { Logger } from "pino";
import type { Jat } from "../jat/token.js";
import type { Metrics } from "../metrics.js";
import { forwardedId } from "../routing/ids.js";
import type { IqRequestType } from "../store/types.js";
import { parse, xml } from "../xmpp/stanzas.js";
import type { Send } from "./send-error.js";

export interface Resend {
  readonly requester: string;
  readonly id: string;
  readonly type: IqRequestType;
  readonly resource: string;
  readonly payload: string;
  /** Its generation: it is sent again under the id it was first forwarded with. */
  readonly gen: number;
}

export function createResender(deps: {
  jat: Jat;
  send: Send;
  domain: string;
  target: string;
  metrics: Metrics;
  log: Logger;
}) {
  const { jat, send, domain, target, metrics, log } = deps;
  return function resend({ requester, id, gen, type, resource, payload }: Resend): void {
    const token = jat.sign(requester);
    const child = parse(payload);
    if (token === null || child === null) return;
    log.debug({ requester, id, resource }, "request sent again to another resource");
    metrics.retries.inc();
    const forwarded = forwardedId(id, gen);
    send(xml("iq", { type, id: forwarded, to: `${target}/${resource}`, from: `${domain}/${token}` }, child));
  };
}

export type Resender = ReturnType<typeof createResender>;
