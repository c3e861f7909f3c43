# The xmpp-client-proxy service image.
#
#   docker build -t xmpp-client-proxy .
#   docker run --rm -e XMPP_SERVICE=xmpp://xmpp.example.org:5347 -e XMPP_DOMAIN=proxy.example.org \
#     -e XMPP_PASSWORD_FILE=/run/secrets/component -e TARGET_JID=impl@example.org -p 8080:8080 xmpp-client-proxy
#
# Settings come from the environment (README.md, "Configuration"). docker-compose.yml runs two replicas, and
# the example implementing client from the `build` stage.
#
# No `# syntax=` line: it would make every BuildKit build fetch a frontend image from a registry, even when
# every base image is local. Nothing here needs more than the builder's own Dockerfile frontend.
ARG NODE_IMAGE=node:22-slim

# ---- build: compile TypeScript to dist/ (the build also copies the Redis Lua scripts to dist/store/lua) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY types ./types
COPY scripts ./scripts
COPY src ./src
RUN npm run build
# Not part of the service: the example implementing client, run by docker-compose.yml from this stage
# (it needs tsx and @xmpp/client, dev dependencies). Copied last so that editing it rebuilds nothing above.
COPY examples ./examples

# ---- runtime: production dependencies and dist/ only, as an unprivileged user ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: no production dependency needs one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Files stay owned by root (read-only for the service); the process runs as uid/gid 10001.
RUN groupadd --system --gid 10001 xcp \
  && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin xcp
USER 10001:10001
# /healthz and /readyz (and /metrics) on HTTP_PORT, 8080 unless set.
EXPOSE 8080
# Slim images have no curl: Node's fetch does the GET. /healthz is liveness; /readyz says whether this
# replica is serving (a standby replica on Prosody is healthy but not ready). It asks HTTP_HOST when that is one
# address (loopback when unset or a wildcard).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const h = process.env.HTTP_HOST; const host = !h || h === '::' || h === '0.0.0.0' ? '127.0.0.1' : h.includes(':') ? '[' + h + ']' : h; fetch('http://' + host + ':' + (process.env.HTTP_PORT || '8080') + '/healthz', { signal: AbortSignal.timeout(4000) }).then((res) => process.exit(res.ok ? 0 : 1), () => process.exit(1))"]
# Exit codes: 0 after SIGTERM/SIGINT (docker stop), 1 unexpected failure, 2 configuration problem.
ENTRYPOINT ["node", "dist/cli.js"]
