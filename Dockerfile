# The coalmine functions image: one binary serving every function
# (FUNCTION_TARGET picks one), the PostgreSQL client tools for the Backup
# function's pg_dump driver, CA certificates, and nothing else. Runs as a
# non-root user. docs/production.md explains the build arguments.
#
#   docker build --build-arg PG_MAJOR=16 -t IMAGE .
#
# The RUN steps are scripts, so that scripts/image/check.sh runs exactly the
# same commands on a machine without Docker.

# GO_VERSION follows go.mod's go directive.
ARG GO_VERSION=1.26.8
# PG_MAJOR is the major version of the database the policy's postgres
# backups dump (pg_dump must be at least as new as the server).
ARG PG_MAJOR=15

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN scripts/image/build.sh /out/functions

FROM debian:bookworm-slim
ARG PG_MAJOR
COPY scripts/image/install-pg-client.sh /usr/local/sbin/
RUN install-pg-client.sh "${PG_MAJOR}" && rm /usr/local/sbin/install-pg-client.sh \
  && groupadd --system --gid 10001 coalmine \
  && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin coalmine
COPY --from=build /out/functions /functions
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/functions"]
