-- Prosody 0.12 configuration for the docker-compose demo of xmpp-client-proxy (docker-compose.yml).
--
-- The same in substance as test/fixtures/prosody.cfg.lua.tpl, the configuration the tests run (same modules,
-- same component declaration; test/unit/compose.test.ts checks that they stay the same), with fixed values
-- instead of the placeholders, and listening on all interfaces of the container network instead of loopback.
-- docker/prosody/entrypoint.sh registers the accounts impl@localhost and alice@localhost, then starts it.
--
-- A demo only: no TLS, passwords sent as PLAIN, fixed secrets. Do not expose a server configured like this
-- to any network you do not control; docker-compose.yml publishes none of its ports.

---------- Process ----------

-- The container's entrypoint may run as root (the image's default user); allow it, as the tests do.
run_as_root = true
-- Stay in the foreground: the container's main process (the -F flag says the same).
daemonize = false
pidfile = "/var/lib/prosody/prosody.pid"
data_path = "/var/lib/prosody"
-- An empty directory (made by the entrypoint): no certificates are needed.
certificates = "/var/lib/prosody/certs"

-- Everything to the console, where `docker compose logs prosody` shows it.
log = {
  { levels = { min = "info" }, to = "console" },
}

---------- Network ----------

-- All interfaces of the container: the proxy replicas and the clients reach it as `prosody` on the compose
-- network. c2s 5222, components 5347 (the defaults, written out).
interfaces = { "*" }
c2s_ports = { 5222 }
component_ports = { 5347 }
component_interface = "*"

---------- Modules ----------

modules_enabled = {
  "roster", -- subscriptions between the implementing client and the component
  "saslauth", -- client login
  "disco", -- service discovery
  "ping", -- XEP-0199 answers
}

-- These are loaded automatically unless disabled:
--   s2s / s2s_auth_certs: no federation in the demo;
--   offline: stanzas to offline users must fail at once, not be stored for later.
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }

---------- Authentication ----------

-- Accounts are created with prosodyctl before the server starts (entrypoint.sh).
authentication = "internal_hashed"
-- No TLS inside the compose network: allow logging in without encryption.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

---------- Hosts ----------

VirtualHost "localhost"

-- The external component (XEP-0114) that the xmpp-client-proxy replicas connect as (one at a time: Prosody
-- accepts one connection per component domain, the other replica stands by).
Component "proxy.localhost"
  component_secret = "change-me-component-secret"
