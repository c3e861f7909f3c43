#!/bin/sh
# Entrypoint of the prosody service of docker-compose.yml: registers the demo accounts, then runs Prosody in
# the foreground as the container's main process (it receives `docker compose stop`'s SIGTERM directly).
#
#   impl@localhost   the implementing account (the proxy's TARGET_JID), password IMPL_PASSWORD
#   alice@localhost  a requester, password ALICE_PASSWORD
#
# Registering again on a restart only sets the same password again.
set -eu

config="${PROSODY_CONFIG:-/etc/prosody/prosody.cfg.lua}"
domain="${XMPP_DOMAIN:-localhost}"

# data_path and certificates of the config (an empty certificates directory: no TLS in the demo).
mkdir -p /var/lib/prosody/certs

prosodyctl --config "$config" register impl "$domain" "${IMPL_PASSWORD:?IMPL_PASSWORD is required}"
prosodyctl --config "$config" register alice "$domain" "${ALICE_PASSWORD:?ALICE_PASSWORD is required}"
echo "entrypoint: registered impl@$domain and alice@$domain"

exec prosody --config "$config" -F
