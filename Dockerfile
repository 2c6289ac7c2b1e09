# syntax=docker/dockerfile:1
# Multi-stage: a static faultline binary on a small base that carries iptables (network faults)
# and iproute2 (network namespaces). The image runs as root because network faults need
# CAP_NET_ADMIN; grant only that capability where you can (e.g. Kubernetes securityContext).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/faultline ./cmd/faultline

FROM alpine:3.22
RUN apk add --no-cache iptables ip6tables iproute2 ca-certificates tzdata
COPY --from=build /out/faultline /usr/local/bin/faultline
ENV FAULTLINE_STATE_DIR=/var/lib/faultline
VOLUME /var/lib/faultline
ENTRYPOINT ["faultline"]
CMD ["--help"]
