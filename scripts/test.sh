#!/usr/bin/env bash
# The test command (README): sets up what a fresh machine lacks, then vets and
# tests everything.
#  - PostgreSQL: the backup and end-to-end tests run a real server. Installed
#    with apt-get when missing (as root); COALMINE_REQUIRE_POSTGRES=1 makes its
#    absence a failure instead of skipped tests.
#  - Google's Pub/Sub emulator (gcloud beta emulators pubsub): the end-to-end
#    tests run against it as well as pstest when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_postgres; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (apt-get install -y postgresql) ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is not installed and cannot be installed here: its tests will be skipped" >&2
  fi
fi
if command -v gcloud >/dev/null 2>&1 && gcloud components list --only-local-state 2>/dev/null | grep -q pubsub-emulator; then
  echo "Pub/Sub backends for the end-to-end tests: pstest and Google's emulator"
else
  echo "Pub/Sub backends for the end-to-end tests: pstest (Google's emulator is not installed)"
fi
go version
go vet ./...
go test ./...
