# tunnel-agent container image: a static binary on a minimal base.
# Build:  docker build -t tunnel-agent .
# Run:    see docs/deploy.md (host network, NET_ADMIN + NET_RAW, config read-only).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION overrides the version the binary reports (default: the module version
# and VCS revision from its build information).
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X tunnel-agent/agent.Version=${VERSION}" \
    -o /out/tunnel-agent ./cmd/tunnel-agent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/tunnel-agent /usr/local/bin/tunnel-agent
# The journal, lock and status socket live here; mount a volume (or the
# host's /run/tunnel-agent) to keep them across container restarts so that
# `down` can revert after a crash.
VOLUME ["/run/tunnel-agent"]
ENTRYPOINT ["/usr/local/bin/tunnel-agent"]
CMD ["up", "-c", "/etc/tunnel-agent/site.yaml"]
