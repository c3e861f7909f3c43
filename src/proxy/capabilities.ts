/**
 * Capabilities of the implementing client's resources (XEP-0115, XEP-0030), learnt once for all replicas.
 *
 * - A resource announces a caps `ver` with its presence; the store tells exactly one replica to ask (section
 *   6.3), which sends disco#info to `<resource>` for `node#ver` from the domain.
 * - The answer may reach any replica: the query's id names the hash and ver (routing/ids.ts). Verified (section
 *   5.4), the features are kept per ver; otherwise the ver is held unverifiable for a while, and its resources
 *   accept every request meanwhile (README, "Balancing").
 * - DISCO_INFO_FROM_CACHE: disco#info to the domain itself is answered from the cached features of the
 *   resources that take new requests, when every one of them is known, without waking the implementing client.
 */
import type { Element } from "@xmpp/xml";
import type { Logger } from "pino";
import type { Metrics } from "../metrics.js";
import { capsQueryId, capsQueryOf } from "../routing/ids.js";
import { decodeVerified, encodeUnverified, encodeVerified } from "../store/caps-entry.js";
import type { Store } from "../store/types.js";
import { type Caps, DISCO_INFO_NS, type DiscoInfo, discoInfoOf, verify } from "../xmpp/caps.js";
import { xml } from "../xmpp/stanzas.js";
import type { Send } from "./send-error.js";

export interface CapabilitiesDeps {
  store: Store;
  send: Send;
  clock: () => number;
  domain: string;
  target: string;
  /** MAX_CAPS_CACHED. */
  maxCached: number;
  /** How long a ver that could not be verified is held so (StoreTtls.capsUnverifiedMs). */
  unverifiedMs: number;
  log: Logger;
  metrics: Metrics;
}

export function createCapabilities(deps: CapabilitiesDeps) {
  const { store, send, clock, domain, target, log, metrics } = deps;
  let queries = 0;

  async function remember(
    ver: string,
    info: DiscoInfo | null,
    outcome: "verified" | "unverified" | "failed",
  ) {
    metrics.capsQueries.inc({ outcome });
    const now = clock();
    const entry = info ? encodeVerified(info) : encodeUnverified(now + deps.unverifiedMs);
    await store.storeCaps(ver, entry, now, deps.maxCached);
  }

  return {
    /** XEP-0115 section 6.3: ask a resource what its caps ver stands for (this replica was chosen to ask). */
    ask(resource: string, caps: Caps): void {
      metrics.capsQueries.inc({ outcome: "asked" });
      log.debug({ resource, ver: caps.ver }, "asking for the features of a caps ver");
      send(
        xml(
          "iq",
          {
            type: "get",
            id: capsQueryId(caps.hash, caps.ver, queries++),
            to: `${target}/${resource}`,
            from: domain,
          },
          xml("query", { xmlns: DISCO_INFO_NS, node: `${caps.node}#${caps.ver}` }),
        ),
      );
    },

    /** The answer to a query of any replica: verified and kept, or the ver held unverifiable. */
    async reply(stanza: Element, { resource, id }: { resource: string; id: string }): Promise<void> {
      const query = capsQueryOf(id);
      if (query === null) return;
      const result = stanza.attrs.type === "result" ? stanza.getChild("query", DISCO_INFO_NS) : undefined;
      if (result === undefined) {
        log.info(
          { resource, ver: query.ver },
          "a resource answered the caps query with an error: it takes every request",
        );
        return remember(query.ver, null, "failed");
      }
      if (!verify({ hash: query.hash, node: "", ver: query.ver }, result)) {
        log.warn(
          { resource, ver: query.ver },
          "the features a resource listed do not hash to its caps ver (XEP-0115 5.4): it takes every request",
        );
        return remember(query.ver, null, "unverified");
      }
      log.debug({ resource, ver: query.ver }, "caps ver verified");
      return remember(query.ver, discoInfoOf(result), "verified");
    },

    /**
     * DISCO_INFO_FROM_CACHE: the union of the cached identities and features of the resources that take new
     * requests; false (the request is forwarded as any other) when one of them is not known or none is online.
     */
    async answerDiscoInfo(stanza: Element, requester: string, to: string): Promise<boolean> {
      const view = await store.routingView(clock());
      const eligible = view.candidates.filter((c) => c.priority >= 0);
      if (eligible.length === 0) return false;
      const identities = new Map<string, Element>();
      const features = new Set<string>();
      for (const { ver } of eligible) {
        const info = ver === "" ? null : decodeVerified(view.caps.get(ver) ?? "");
        if (info === null) return false;
        for (const { category, type, lang, name } of info.identities) {
          const attrs = { category, type, ...(lang ? { "xml:lang": lang } : {}), ...(name ? { name } : {}) };
          identities.set(JSON.stringify(attrs), xml("identity", attrs));
        }
        for (const feature of info.features) features.add(feature);
      }
      metrics.discoFromCache.inc();
      send(
        xml(
          "iq",
          { type: "result", id: stanza.attrs.id, to: requester, from: to },
          xml(
            "query",
            { xmlns: DISCO_INFO_NS },
            ...identities.values(),
            ...[...features].sort().map((feature) => xml("feature", { var: feature })),
          ),
        ),
      );
      return true;
    },
  };
}

export type Capabilities = ReturnType<typeof createCapabilities>;
