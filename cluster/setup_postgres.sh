#!/usr/bin/env bash
# The MLflow server's run store on a cluster's head: a PostgreSQL server of its own, on 127.0.0.1 only.
# Many trials write at once on a cluster; sqlite takes one writer at a time, PostgreSQL many.
#
#   bash cluster/setup_postgres.sh [--folder DIR] [--port PORT] [--password-file FILE]
#
# (defaults from $GLOVESWEEP_POSTGRES_FOLDER, $GLOVESWEEP_POSTGRES_PORT, $PGPASSFILE where set)
#
# Run by head_start_ray_commands in cluster/*.yaml before cluster/start_mlflow.py (idempotent: safe on every
# start). Prints the backend store URI for `start_mlflow.py --backend-store-uri` as its last line; the URI holds
# no password.
#
# 1. PostgreSQL from the distribution (Debian 12 / Ubuntu 22.04: 15 / 14) when its binaries are missing.
# 2. A database cluster in DIR (default ~/glovesweep-postgres; /var/lib/postgresql/glovesweep as root), made by
#    initdb as this user (as `postgres` when run as root: initdb refuses root); password authentication
#    (scram-sha-256) over TCP, which listens on 127.0.0.1 only (the MLflow server runs on the same head);
#    its Unix socket in DIR.
# 3. The server started with pg_ctl unless it runs (default port 5433: the distribution's own server may hold 5432).
# 4. Role `glovesweep` owning database `mlflow`; its password, random, only in FILE (default ~/.pgpass,
#    mode 0600, libpq's password file, which MLflow's driver psycopg2 reads), never on a command line.
set -euo pipefail

if [[ "$(id -u)" -eq 0 ]]; then FOLDER=/var/lib/postgresql/glovesweep; else FOLDER="$HOME/glovesweep-postgres"; fi
FOLDER="${GLOVESWEEP_POSTGRES_FOLDER:-$FOLDER}"
PORT="${GLOVESWEEP_POSTGRES_PORT:-5433}"
PASSWORD_FILE="${PGPASSFILE:-$HOME/.pgpass}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --folder) FOLDER="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --password-file) PASSWORD_FILE="$2"; shift 2 ;;
    *) echo "setup_postgres.sh: unknown argument '$1'; use --folder DIR, --port PORT, --password-file FILE" >&2
       exit 2 ;;
  esac
done

newest_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [[ -z "$(newest_bin)" ]]; then
  SUDO=(); [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
  echo "setup_postgres.sh: installing PostgreSQL" >&2
  "${SUDO[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq postgresql >&2
fi
BIN="$(newest_bin)"

# The server runs as this user, or as `postgres` when this is root.
AS=(); OWNER="$(id -un)"
if [[ "$(id -u)" -eq 0 ]]; then AS=(runuser -u postgres --); OWNER=postgres; fi
mkdir -p "$FOLDER"
chmod 700 "$FOLDER"
[[ "$(id -u)" -ne 0 ]] || chown postgres "$FOLDER"
DATA="$FOLDER/data"
if [[ ! -f "$DATA/PG_VERSION" ]]; then
  "${AS[@]}" "$BIN/initdb" -D "$DATA" -U "$OWNER" -E UTF8 --auth-local=peer --auth-host=scram-sha-256 >&2
fi
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$FOLDER/postgres.log" -w -t 120 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$FOLDER" start >&2
fi
PSQL=("${AS[@]}" "$BIN/psql" -h "$FOLDER" -p "$PORT" -U "$OWNER" -d postgres -v ON_ERROR_STOP=1 -qtA)

# The password: the one FILE already holds for this server, else a new one (hex: nothing to quote).
ENTRY="127.0.0.1:$PORT:mlflow:glovesweep:"
PASSWORD="$( (sed -n "s/^${ENTRY//./\\.}//p" "$PASSWORD_FILE" 2>/dev/null || true) | head -n 1)"
if [[ -z "$PASSWORD" ]]; then
  PASSWORD="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  (umask 077; touch "$PASSWORD_FILE")
  { grep -v "^${ENTRY//./\\.}" "$PASSWORD_FILE" || true; echo "$ENTRY$PASSWORD"; } > "$PASSWORD_FILE.new"
  mv "$PASSWORD_FILE.new" "$PASSWORD_FILE"
fi
chmod 600 "$PASSWORD_FILE"
# printf is a shell builtin: the password reaches psql on stdin, never on a command line.
if [[ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'glovesweep'")" == 1 ]]; then
  printf "ALTER ROLE glovesweep LOGIN PASSWORD '%s';\n" "$PASSWORD" | "${PSQL[@]}" >&2
else
  printf "CREATE ROLE glovesweep LOGIN PASSWORD '%s';\n" "$PASSWORD" | "${PSQL[@]}" >&2
fi
if [[ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")" != 1 ]]; then
  "${PSQL[@]}" -c "CREATE DATABASE mlflow OWNER glovesweep" >&2
fi
echo "postgresql+psycopg2://glovesweep@127.0.0.1:$PORT/mlflow"
