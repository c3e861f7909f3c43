/**
 * The package's public API, for authors of implementing clients: read the requester out of the address a
 * proxied request comes from. Running the service is `xmpp-client-proxy` (see README.md).
 */
export { type DecodedToken, decodeToken, MAX_TOKEN_OCTETS, TOKEN_VERSION } from "./jat/token.js";
