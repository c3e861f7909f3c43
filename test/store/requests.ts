/** The requests the store tests forward: a get from one requester, due a second after `now`. */
import type { ForwardInput } from "../../src/store/types.js";

export const forwardInput = (id: string, now: number, over: Partial<ForwardInput> = {}): ForwardInput => ({
  requester: "user@example.org/desk",
  id,
  to: "proxy.example.org",
  type: "get",
  now,
  deadline: now + 1000,
  pick: 0,
  payload: "<q/>",
  ...over,
});
