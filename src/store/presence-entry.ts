/**
 * A resource's presence as the presence hash keeps it (read by lib/choose.lua, service-state-3.lua and
 * routing-view-3.lua): priority, show, status and caps ver, separated by 0x1F. XML character data cannot hold
 * 0x1F, so no field can contain the separator. Versions before 0.3 wrote the first three only.
 */
import type { Candidate } from "../routing/choose.js";
import type { ResourcePresence } from "./types.js";

export const encodePresence = (p: ResourcePresence): string =>
  [p.priority, p.show, p.status, p.ver].join("\x1f");

/** The candidate a presence entry describes; a missing or unreadable entry is priority 0 with nothing else. */
export function candidateOf(name: string, entry: string | null | undefined): Candidate {
  const [priority = "", show = "", , ver = ""] = (entry ?? "").split("\x1f");
  const value = Number.parseInt(priority, 10);
  return { name, priority: Number.isInteger(value) ? value : 0, show, ver };
}
