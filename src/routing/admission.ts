/**
 * Admission: whether a request that classify() would forward may use the service at all. A pure decision from
 * the settings; the limits that need shared state (pending per requester, pending in total) are enforced by the
 * store atomically with recording the request (forward-5.lua).
 */
import type { ErrorName } from "../xmpp/errors.js";

export interface AdmissionPolicy {
  /** REQUESTER_ALLOW: bare JIDs and domains allowed; null allows everyone not denied. */
  readonly allow: readonly string[] | null;
  /** REQUESTER_DENY: bare JIDs and domains refused; it wins over the allow list. */
  readonly deny: readonly string[];
  /** MAX_ID_LENGTH, in octets: ids become store keys and travel in every answer. */
  readonly maxIdLength: number;
}

/** Whether a list entry (a bare JID `user@domain` or a domain) names this requester. */
function listed(entries: readonly string[], bare: string, domain: string): boolean {
  return entries.some((entry) => entry === bare || entry === domain);
}

/** The error to refuse the request with, or null to admit it. */
export function admit(
  request: { readonly requester: string; readonly id: string },
  policy: AdmissionPolicy,
): ErrorName | null {
  if (Buffer.byteLength(request.id) > policy.maxIdLength) return "idTooLong";
  const slash = request.requester.indexOf("/");
  const bare = (slash < 0 ? request.requester : request.requester.slice(0, slash)).toLowerCase();
  const domain = bare.slice(bare.indexOf("@") + 1);
  if (listed(policy.deny, bare, domain)) return "forbidden";
  if (policy.allow !== null && !listed(policy.allow, bare, domain)) return "forbidden";
  return null;
}
