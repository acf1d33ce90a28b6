#!/bin/sh
# install-pg-client.sh MAJOR: installs the PostgreSQL client tools (pg_dump,
# pg_restore) of one major version, and the CA certificates Google's APIs
# need, on Debian bookworm. The Backup function's pg_dump driver must run a
# pg_dump at least as new as the database server (pg_dump refuses newer
# servers), so MAJOR is the database's major version (Cloud SQL's
# databaseVersion POSTGRES_16 is 16). Bookworm's own archive has 15; any
# other major comes from the PostgreSQL project's archive (apt.postgresql.org),
# set up with the script Debian's postgresql-common package ships for it.
# The Dockerfile runs this script, and so does scripts/image/check.sh.
set -eu
major="${1:?usage: install-pg-client.sh MAJOR (the database server's major version, e.g. 15)}"
case "$major" in
'' | *[!0-9]*)
  echo "install-pg-client.sh: MAJOR must be a PostgreSQL major version such as 15 or 16, not \"$major\"" >&2
  exit 2
  ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-cache show "postgresql-client-$major" >/dev/null 2>&1; then
  echo "postgresql-client-$major is not in Debian's archive: adding apt.postgresql.org"
  apt-get install -y -qq --no-install-recommends postgresql-common ca-certificates >/dev/null
  /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y >/dev/null
fi
apt-get install -y -qq --no-install-recommends ca-certificates "postgresql-client-$major" >/dev/null
rm -rf /var/lib/apt/lists/*
"/usr/lib/postgresql/$major/bin/pg_dump" --version
"/usr/lib/postgresql/$major/bin/pg_restore" --version
