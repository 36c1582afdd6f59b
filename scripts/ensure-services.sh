#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis servers the test suite needs are up, starting the
# locally installed ones if they are merely stopped, and print the DATABASE_URL to use.
#
# stdout: exactly one line, the DATABASE_URL for the tests (`make test` captures it).
# stderr: everything else.
#
# Inputs (environment, all optional):
#   DATABASE_URL     if it is a postgres:// URL, use that server as is (nothing is started)
#   PGUSER           database role to use for the local server (default: the OS user)
#   TEST_BROKER_URL  Redis URL for the tests (default redis://127.0.0.1:6379/15); only the
#                    local default server is ever started
#   PG_SOCKET_DIR    Unix socket directory of the local server (default /var/run/postgresql)
set -euo pipefail

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() { printf 'ensure-services: %s\n' "$*" >&2; exit 1; }

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=holdfast
PG_SOCKET_DIR="${PG_SOCKET_DIR:-/var/run/postgresql}"
ROLE="${PGUSER:-$(id -un)}"
BROKER_URL="${TEST_BROKER_URL:-redis://127.0.0.1:6379/15}"
WAIT_SECONDS=30
LOG_DIR="${TMPDIR:-/tmp}"

# Don't let a caller's libpq environment redirect the probes below.
unset PGHOST PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS

# Run a command as root (for pg_ctlcluster); sudo only when needed, never prompting
# without a terminal.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        return 1
    fi
}

# Run a command as the postgres OS user, which peer authentication lets in as the
# postgres superuser over the Unix socket on a stock Debian install.
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        (cd / && "$@")
    elif [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    elif [ "$(id -u)" -eq 0 ]; then
        (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then (cd / && sudo -u postgres -- "$@"); else (cd / && sudo -n -u postgres -- "$@"); fi
    else
        return 1
    fi
}

wait_for() {  # wait_for <description> <command...>
    local what="$1" i
    shift
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "$what did not become ready within ${WAIT_SECONDS}s"
    return 1
}

# ---------------------------------------------------------------- PostgreSQL

pg_local_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3; }

# psql against the local server; $1 is "tcp" or "socket", the rest are psql arguments.
pg_psql() {
    local via="$1" host
    shift
    if [ "$via" = tcp ]; then host="$PG_HOST"; else host="$PG_SOCKET_DIR"; fi
    psql -X -w -q -v ON_ERROR_STOP=1 \
        "host=$host port=$PG_PORT user=$ROLE dbname=postgres connect_timeout=5" "$@"
}

# True when the role can log in this way and may create the test databases.
pg_role_usable() {
    local out
    out="$(pg_psql "$1" -Atc 'SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user' 2>/dev/null)" || return 1
    [ "$out" = t ]
}

pg_can_login() { pg_psql "$1" -Atc 'SELECT 1' >/dev/null 2>&1; }

pg_start_local() {
    command -v pg_isready >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 \
        || die "PostgreSQL is not installed: install the Debian package postgresql (or run .ci/run) or set DATABASE_URL to a reachable server."
    local cluster=""
    if command -v pg_lsclusters >/dev/null 2>&1; then
        cluster="$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1 " " $2; exit }')"
    fi
    if [ -z "$cluster" ] && [ -d /etc/postgresql ]; then
        local version
        version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
        [ -n "$version" ] && [ -d "/etc/postgresql/$version/main" ] && cluster="$version main"
    fi
    [ -n "$cluster" ] && command -v pg_ctlcluster >/dev/null 2>&1 \
        || die "PostgreSQL is not installed: install the Debian package postgresql (or run .ci/run) or set DATABASE_URL to a reachable server."

    local start_log="$LOG_DIR/holdfast-pg-start.log"
    log "PostgreSQL is not running; starting cluster $cluster"
    # Full redirection: the server must not inherit our stdout/stderr (make captures stdout).
    # shellcheck disable=SC2086  # $cluster is "<version> <name>"
    if ! as_root pg_ctlcluster --skip-systemctl-redirect $cluster start </dev/null >"$start_log" 2>&1 \
        && ! as_postgres pg_ctlcluster --skip-systemctl-redirect $cluster start </dev/null >"$start_log" 2>&1; then
        sed 's/^/  /' "$start_log" >&2 || true
        die "could not start PostgreSQL cluster $cluster (need root, sudo or the postgres user); start it yourself or set DATABASE_URL to a reachable server."
    fi
    wait_for PostgreSQL pg_local_ready || die "PostgreSQL did not come up; see /var/log/postgresql/."
    log "PostgreSQL is up"
}

pg_ensure_role() {
    log "creating/granting PostgreSQL role '$ROLE' (superuser, like a local development cluster) via the postgres OS user"
    local sql_log="$LOG_DIR/holdfast-pg-role.log"
    # psql variables (:'r', :"r") quote the name properly; they only work on stdin, not -c.
    if ! printf '%s\n' \
        "SELECT format('CREATE ROLE %I LOGIN SUPERUSER', :'r') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'r') \\gexec" \
        "ALTER ROLE :\"r\" LOGIN SUPERUSER;" \
        | as_postgres psql -X -q -v ON_ERROR_STOP=1 -v r="$ROLE" -p "$PG_PORT" -d postgres >"$sql_log" 2>&1; then
        sed 's/^/  /' "$sql_log" >&2 || true
        die "could not create the PostgreSQL role '$ROLE' (need root, sudo or the postgres user): run  createuser -s $ROLE  as postgres, or set DATABASE_URL."
    fi
}

pg_url_for() {
    if [ "$1" = tcp ]; then
        printf 'postgres://%s@%s:%s/%s\n' "$ROLE" "$PG_HOST" "$PG_PORT" "$PG_DB"
    else
        # libpq and dj-database-url both read a percent-encoded socket directory as the host.
        printf 'postgres://%s@%s:%s/%s\n' "$ROLE" "${PG_SOCKET_DIR//\//%2F}" "$PG_PORT" "$PG_DB"
    fi
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        case "$DATABASE_URL" in
            postgres://* | postgresql://* | pgsql://*)
                command -v pg_isready >/dev/null 2>&1 \
                    || die "pg_isready is missing: install the Debian package postgresql-client."
                local probe="${DATABASE_URL/#pgsql:/postgresql:}"
                pg_isready -q -d "$probe" -t 5 \
                    || die "PostgreSQL at DATABASE_URL is not reachable (pg_isready failed); fix it or unset DATABASE_URL to use the local server."
                log "PostgreSQL: using DATABASE_URL from the environment"
                printf '%s\n' "$DATABASE_URL"
                return
                ;;
            *)
                log "ignoring non-PostgreSQL DATABASE_URL from the environment; the tests need PostgreSQL"
                ;;
        esac
    fi

    if pg_local_ready; then
        log "PostgreSQL is running on $PG_HOST:$PG_PORT"
    else
        pg_start_local
    fi

    # Prefer TCP (trust or a ~/.pgpass); fall back to the Unix socket, where a stock Debian
    # install uses peer authentication (OS user == role name) while TCP asks for a password.
    local via=""
    for attempt in 1 2; do
        if pg_role_usable tcp; then via=tcp; break; fi
        if [ -d "$PG_SOCKET_DIR" ] && pg_role_usable socket; then via=socket; break; fi
        [ "$attempt" = 1 ] || break
        pg_ensure_role
    done
    if [ -z "$via" ]; then
        if pg_can_login tcp || pg_can_login socket; then
            die "PostgreSQL role '$ROLE' cannot create databases: run  ALTER ROLE \"$ROLE\" CREATEDB  as postgres, or set DATABASE_URL."
        fi
        die "cannot log in to PostgreSQL as '$ROLE' over TCP ($PG_HOST:$PG_PORT) or the socket ($PG_SOCKET_DIR): allow it in pg_hba.conf (e.g. 'host all $ROLE 127.0.0.1/32 trust') or set DATABASE_URL."
    fi
    log "PostgreSQL: role '$ROLE' logs in over $via"

    # pytest-django creates test_$PG_DB itself; the base database is for manual use.
    if [ "$(pg_psql "$via" -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        log "creating database $PG_DB"
        pg_psql "$via" -c "CREATE DATABASE $PG_DB" >&2
    fi
    pg_url_for "$via"
}

# --------------------------------------------------------------------- Redis

redis_ready() { [ "$(timeout 5 redis-cli -u "$BROKER_URL" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
    command -v redis-cli >/dev/null 2>&1 \
        || die "Redis is not installed: install the Debian package redis-server (or run .ci/run) or set TEST_BROKER_URL to a reachable server."
    if redis_ready; then
        log "Redis is running ($BROKER_URL)"
        return
    fi
    case "$BROKER_URL" in
        redis://127.0.0.1:6379* | redis://localhost:6379*) ;;
        *) die "Redis at TEST_BROKER_URL ($BROKER_URL) is not reachable." ;;
    esac
    command -v redis-server >/dev/null 2>&1 \
        || die "Redis is not installed: install the Debian package redis-server (or run .ci/run) or set TEST_BROKER_URL to a reachable server."
    local redis_log="$LOG_DIR/holdfast-redis-6379.log"
    log "Redis is not running; starting redis-server on 127.0.0.1:6379 (log: $redis_log)"
    # No persistence: the test broker holds nothing worth keeping. "-::1" binds IPv6
    # loopback only if the host has it.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
        --save "" --appendonly no --dir "$LOG_DIR" --logfile "$redis_log" \
        </dev/null >/dev/null 2>&1 \
        || die "redis-server failed to start; see $redis_log"
    wait_for Redis redis_ready || die "Redis did not come up; see $redis_log"
    log "Redis is up"
}

ensure_redis
ensure_postgres
