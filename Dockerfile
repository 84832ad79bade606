# Build: docker build -t fieldbridge .
# Run:   docker run -v /etc/bridge:/etc/bridge -v bridge-buffer:/var/lib/bridge fieldbridge run -config /etc/bridge/bridge.hcl
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# Patched ristretto (see third_party/ristretto/FIELDBRIDGE.md), a go.mod replace.
COPY third_party ./third_party
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/bridge ./cmd/bridge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/bridge --create-home bridge
COPY --from=build /out/bridge /usr/local/bin/bridge
COPY config.example.hcl /etc/bridge/config.example.hcl
USER bridge
VOLUME /var/lib/bridge
# Logs are JSON when stderr is not a terminal. Exit code 1 means a
# configuration error: fix the file rather than restarting.
ENTRYPOINT ["/usr/local/bin/bridge"]
CMD ["run", "-config", "/etc/bridge/bridge.hcl"]
