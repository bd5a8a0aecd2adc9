# trowfs in a container. Build: docker build -t trowfs .
# The builder's Go version is the one go.mod names (integration/container_test.go checks it).
FROM golang:1.26.0-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binary: no libc, no libfuse (go-fuse speaks the FUSE protocol itself).
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/trowfs ./cmd/trowfs

# Runtime: busybox (wget for exec probes against the loopback endpoint) and fusermount3
# for the unprivileged unmount path; trowfs itself needs nothing else.
FROM alpine:3.21 AS runtime
RUN apk add --no-cache fuse3
COPY --from=build /out/trowfs /usr/local/bin/trowfs
# The endpoint stays on loopback inside the pod; add DATA MNT [--exec -- CMD ...] as arguments.
ENTRYPOINT ["/usr/local/bin/trowfs", "mount", "--log-format=json", "--listen=127.0.0.1:9091", "--ready-file=/run/trowfs.ready"]
