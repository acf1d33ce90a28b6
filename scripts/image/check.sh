#!/usr/bin/env bash
# check.sh [PG_MAJOR]: on a machine without Docker, runs the Dockerfile's
# build steps as the Dockerfile runs them and checks what they make:
#   1. scripts/image/build.sh (the build stage's RUN): the functions binary,
#      static; it starts with FUNCTION_TARGET set and answers HTTP;
#   2. scripts/image/install-pg-client.sh PG_MAJOR (the runtime stage's RUN,
#      default the Dockerfile's PG_MAJOR): pg_dump and pg_restore of that
#      major version. Needs root and apt-get (Debian bookworm), as in the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
major="${1:-$(sed -n 's/^ARG PG_MAJOR=//p' Dockerfile)}"
out="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

echo "== build stage: scripts/image/build.sh"
start=$(date +%s)
scripts/image/build.sh "$out/functions"
echo "built in $(( $(date +%s) - start )) s: $(du -h "$out/functions" | cut -f1) $(file -b "$out/functions" | cut -d, -f1-2,5)"
file -b "$out/functions" | grep -q "statically linked" || { echo "the binary is not static" >&2; exit 1; }

port=$(( 20000 + RANDOM % 20000 ))
FUNCTION_TARGET=Verify PORT=$port "$out/functions" >"$out/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/" -d '{}' || true)
  [ "$code" != 000 ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out/log" >&2; exit 1; }
  sleep 0.1
done
echo "FUNCTION_TARGET=Verify serves on :$port; an empty event gets HTTP $code"
[ "$code" = 400 ] || { echo "want HTTP 400 for an event with no CloudEvent attributes" >&2; cat "$out/log" >&2; exit 1; }

echo "== runtime stage: scripts/image/install-pg-client.sh $major"
scripts/image/install-pg-client.sh "$major"
"/usr/lib/postgresql/$major/bin/pg_dump" --version | grep -q "(PostgreSQL) $major\." \
  || { echo "pg_dump is not PostgreSQL $major" >&2; exit 1; }
echo "ok: the image's build steps work (PG_MAJOR=$major)"
