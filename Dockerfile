# waiver serve in a container. Build:  docker build -t waiver .
# Run (configuration and policies mounted read-only, the register on a volume):
#   docker run -p 8080:8080 -v "$PWD/waiver.yaml:/etc/waiver/waiver.yaml:ro" -v "$PWD/policies:/etc/waiver/policies:ro" \
#     -v waiver-data:/var/lib/waiver waiver
# or with PostgreSQL: ... waiver serve --host 0.0.0.0 --config /etc/waiver/waiver.yaml --database postgres://waiver@db/waiver
# (This Dockerfile is not built in this repository's CI: the build machine has no container daemon.)

ARG SWIFT_VERSION=6.3
FROM swift:${SWIFT_VERSION}-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev binutils && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The same self-contained binary as the release tarball (Swift runtime linked statically, stripped).
RUN bash scripts/release.sh && cp dist/waiver-*/waiver /usr/local/bin/waiver

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-0 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/waiver --create-home waiver
COPY --from=build /usr/local/bin/waiver /usr/local/bin/waiver
USER waiver
WORKDIR /var/lib/waiver
VOLUME /var/lib/waiver
EXPOSE 8080
ENTRYPOINT ["waiver"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--config", "/etc/waiver/waiver.yaml", "--register", "/var/lib/waiver/register.sqlite"]
