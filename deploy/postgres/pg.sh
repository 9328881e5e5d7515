#!/usr/bin/env bash
# Local PostgreSQL for Bondgenoot (no Docker): uses the Debian-packaged server (pg_ctlcluster).
#
#   pg.sh install   apt-get install postgresql when the server is missing (root or sudo)
#   pg.sh up        make sure a server runs; print an admin URL on stdout (progress goes to stderr):
#                     export DATABASE_URL="$(deploy/postgres/pg.sh up)"
#                   a reachable $DATABASE_URL is used as is; otherwise the local Debian cluster is started
#                   and a login role with CREATEDB is ensured (default bondgenoot/bondgenoot)
#   pg.sh down      stop the cluster, only if this script started it (--force: stop it anyway)
#   pg.sh status    cluster state and whether the admin URL answers
#   pg.sh url       print the admin URL of the local cluster without starting anything
#
# Environment: DATABASE_URL, PG_VERSION / PG_CLUSTER (pick a cluster), BONDGENOOT_PG_USER,
# BONDGENOOT_PG_PASSWORD, PG_DATA_MARK_DIR (where the "started by pg.sh" mark lives; default $ROOT/.data/postgres).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
APP_USER="${BONDGENOOT_PG_USER:-bondgenoot}"
APP_PASSWORD="${BONDGENOOT_PG_PASSWORD:-bondgenoot}"
MARK_DIR="${PG_DATA_MARK_DIR:-$ROOT/.data/postgres}"
MARK="$MARK_DIR/started-by-pg.sh"

log() { printf '[pg] %s\n' "$*" >&2; }
die() { printf '[pg] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$APP_USER" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BONDGENOOT_PG_USER must be a plain lower-case identifier"

# run a command as root (apt) -- directly when root, else through sudo
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root (or sudo) for: $*"
    fi
}

# run a command as the postgres OS user
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then "$@"
    elif [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"
        else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    elif command -v sudo >/dev/null 2>&1; then sudo -n -u postgres "$@"
    else die "need root, sudo or the postgres user to manage the cluster"
    fi
}

have_server() {
    command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

cmd_install() {
    if have_server; then
        log "PostgreSQL server already installed ($(ls /usr/lib/postgresql | sort -V | tr '\n' ' '))"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is missing and apt-get is not available; install a PostgreSQL server or set DATABASE_URL"
    log "installing PostgreSQL with apt-get ..."
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    have_server || die "apt-get install postgresql finished but no server binaries were found"
}

# Picks "<version> <cluster> <port> <status>" of the cluster to use (highest version; 'main' preferred).
pick_cluster() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    pg_lsclusters -h 2>/dev/null | awk -v want_v="${PG_VERSION:-}" -v want_c="${PG_CLUSTER:-}" '
        (want_v == "" || $1 == want_v) && (want_c == "" || $2 == want_c) {
            pref = ($2 == "main") ? 1 : 0
            print $1, pref, $2, $3, $4
        }' | sort -k1,1V -k2,2n | tail -n1 | awk '{print $1, $3, $4, $5}'
}

url_for() {  # PORT
    printf 'postgresql://%s:%s@127.0.0.1:%s/postgres\n' "$APP_USER" "$APP_PASSWORD" "$1"
}

# true when URL accepts a login and a query
url_works() {
    local url="$1" plain
    plain="$(sed -E 's#^postgres(ql)?\+[a-z0-9_]+://#postgresql://#' <<<"$url")"   # strip SQLAlchemy "+driver"
    if command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=3 psql "$plain" -XAtqc 'select 1' >/dev/null 2>&1
    else
        local py="${PYTHON:-$ROOT/.venv/bin/python}"
        [[ -x "$py" ]] || py="$(command -v python3 || echo false)"
        "$py" -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=3).close()' "$plain" >/dev/null 2>&1
    fi
}

ensure_cluster_running() {  # -> prints "<version> <cluster> <port>"
    local info v c port status
    info="$(pick_cluster || true)"
    if [[ -z "$info" ]]; then
        have_server || die "no PostgreSQL server installed; run: $0 install (or set DATABASE_URL)"
        v="${PG_VERSION:-$(ls /usr/lib/postgresql | sort -V | tail -n1)}"
        c="${PG_CLUSTER:-main}"
        log "creating cluster $v/$c ..."
        as_root pg_createcluster "$v" "$c" >&2
        info="$(pick_cluster)" || die "cluster $v/$c not found after pg_createcluster"
    fi
    read -r v c port status <<<"$info"
    if [[ "$status" != online* ]]; then
        log "starting PostgreSQL cluster $v/$c (port $port) ..."
        if [[ $(id -u) -eq 0 || "$(id -un)" == postgres ]]; then
            pg_ctlcluster "$v" "$c" start >&2
        else
            as_root pg_ctlcluster "$v" "$c" start >&2
        fi
        mkdir -p "$MARK_DIR"
        echo "$v $c" >"$MARK"
    fi
    local _
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p "$port" || die "cluster $v/$c does not accept TCP connections on 127.0.0.1:$port"
    printf '%s %s %s\n' "$v" "$c" "$port"
}

ensure_role() {  # PORT
    local port="$1" pw_sql
    pw_sql="${APP_PASSWORD//\'/\'\'}"
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres >/dev/null <<SQL
SET client_min_messages = warning;
DO \$do\$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$APP_USER') THEN
        CREATE ROLE "$APP_USER" LOGIN CREATEDB PASSWORD '$pw_sql';
    ELSE
        ALTER ROLE "$APP_USER" LOGIN CREATEDB PASSWORD '$pw_sql';
    END IF;
END
\$do\$;
SQL
}

cmd_up() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        if url_works "$DATABASE_URL"; then
            log "using the reachable DATABASE_URL from the environment"
            printf '%s\n' "$DATABASE_URL"
            return 0
        fi
        log "DATABASE_URL is set but not reachable; falling back to the local cluster"
    fi
    local v c port url
    read -r v c port <<<"$(ensure_cluster_running)"
    url="$(url_for "$port")"
    if ! url_works "$url"; then
        log "ensuring login role '$APP_USER' (CREATEDB) on cluster $v/$c ..."
        ensure_role "$port"
        url_works "$url" || die "role '$APP_USER' exists but cannot log in over TCP (check pg_hba.conf of $v/$c)"
    fi
    log "PostgreSQL $v/$c ready on 127.0.0.1:$port"
    printf '%s\n' "$url"
}

cmd_down() {
    local force=0 v c info
    [[ "${1:-}" == --force ]] && force=1
    if [[ -f "$MARK" ]]; then
        read -r v c <"$MARK"
    elif (( force )); then
        info="$(pick_cluster || true)"
        [[ -n "$info" ]] || { log "no cluster"; return 0; }
        read -r v c _ <<<"$info"
    else
        log "not stopping PostgreSQL: it was not started by pg.sh (use --force)"
        return 0
    fi
    log "stopping PostgreSQL cluster $v/$c ..."
    if [[ $(id -u) -eq 0 || "$(id -un)" == postgres ]]; then
        pg_ctlcluster "$v" "$c" stop -m fast >&2 || true
    else
        as_root pg_ctlcluster "$v" "$c" stop -m fast >&2 || true
    fi
    rm -f "$MARK"
}

cmd_status() {
    command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters || echo "no Debian PostgreSQL clusters (pg_lsclusters missing)"
    local info v c port status
    info="$(pick_cluster || true)"
    if [[ -n "$info" ]]; then
        read -r v c port status <<<"$info"
        if url_works "$(url_for "$port")"; then echo "admin URL works: $(url_for "$port")"; else echo "admin URL not reachable: $(url_for "$port")"; fi
        [[ -f "$MARK" ]] && echo "started by pg.sh ($MARK)"
    fi
    if [[ -n "${DATABASE_URL:-}" ]]; then
        if url_works "$DATABASE_URL"; then echo "DATABASE_URL reachable"; else echo "DATABASE_URL NOT reachable"; fi
    fi
}

cmd_url() {
    local info v c port status
    info="$(pick_cluster || true)"
    [[ -n "$info" ]] || die "no local cluster"
    read -r v c port status <<<"$info"
    url_for "$port"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install ;;
        up) cmd_up ;;
        down) cmd_down "$@" ;;
        status) cmd_status ;;
        url) cmd_url ;;
        *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"; exit $?
