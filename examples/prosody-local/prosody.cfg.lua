-- Prosody 0.12 (the Debian package `prosody`) for trying xmpp-client-proxy on one machine, as an ordinary
-- user, beside any system Prosody: README.md, "Try it locally with Prosody". From the repository root:
--
--   prosodyctl --config examples/prosody-local/prosody.cfg.lua register impl localhost impl-password
--   prosody --config examples/prosody-local/prosody.cfg.lua -F
--
-- Always pass --config: without it prosody and prosodyctl use the system's /etc/prosody/prosody.cfg.lua.
-- `npm run demo` runs a copy of this file on free ports.
--
-- Loopback only, no TLS, passwords sent as PLAIN: never expose a server configured like this to a network.

---------- Files ----------

-- Everything the server writes (accounts, rosters, its pid file) goes to data/ beside this file, wherever it
-- is started from. A relative data_path would be relative to the working directory, and without one Prosody
-- uses /var/lib/prosody, which belongs to the system's server.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
data_path = here .. "/data"
pidfile = "prosody.pid" -- relative to data_path
-- No TLS, so no certificates: this folder has none, and naming it keeps Prosody from complaining that its
-- default certs/ folder is missing (relative to this file).
certificates = "."
-- Everything to the terminal it runs in.
log = { { levels = { min = "info" }, to = "console" } }
-- Lets root start it too (a container); Prosody would otherwise switch to the `prosody` user, which cannot
-- write to data/. Changes nothing for an ordinary user.
run_as_root = true

---------- Network ----------

-- Loopback only. Not the default ports (5222, 5347), on which a system Prosody may already listen.
interfaces = { "127.0.0.1" }
c2s_ports = { 15222 }
component_ports = { 15347 }
component_interface = "127.0.0.1"

---------- Modules ----------

modules_enabled = {
  "roster", -- the presence subscription between the implementing client and the component
  "saslauth", -- client login
  "disco", -- service discovery
  "ping", -- XEP-0199 answers
}
-- Loaded unless disabled: s2s and s2s_auth_certs (federation, port 5269, which a system Prosody holds) and
-- offline (a stanza to an offline user must fail at once, not wait for the user).
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }

---------- Authentication ----------

-- Accounts are created with prosodyctl (the server need not run).
authentication = "internal_hashed"
-- No TLS on loopback: log in without encryption, with PLAIN (what the example clients use on loopback).
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

---------- Hosts ----------

-- The users: impl@localhost (the implementing client) and alice@localhost (a requester).
VirtualHost "localhost"

-- The external component (XEP-0114) that xmpp-client-proxy connects as: its XMPP_DOMAIN and XMPP_PASSWORD.
Component "proxy.localhost"
  component_secret = "change-me-component-secret"
