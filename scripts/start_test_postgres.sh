#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for nasflow's storage tests, or stop one.
#
#   eval "$(scripts/start_test_postgres.sh)"        # start; exports NASFLOW_TEST_POSTGRES_URL
#   python -m pytest -q tests/storage
#   scripts/start_test_postgres.sh --stop "$NASFLOW_TEST_POSTGRES_DIR"
#
# The cluster lives in a new temporary folder (data, log and unix socket), listens on 127.0.0.1 only,
# on the first free port from ${NASFLOW_TEST_POSTGRES_PORT:-54329} on, and trusts local connections:
# never use it for anything but tests. Only the export lines go to stdout, so the output can be
# eval'ed; progress and errors go to stderr. Run as root (as CI does), the server runs as the
# unprivileged `postgres` user, because PostgreSQL refuses to run as root.
set -euo pipefail

say() { echo "start_test_postgres: $*" >&2; }

bin_dir() {
    # Debian keeps each major version in /usr/lib/postgresql/<major>/bin; take the newest
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    if [[ -z "$dir" ]] && command -v pg_config >/dev/null; then
        dir="$(pg_config --bindir)"
    fi
    if [[ -z "$dir" ]] && command -v initdb >/dev/null; then
        dir="$(dirname "$(command -v initdb)")"
    fi
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        say "no PostgreSQL server binaries found; install them (Debian: apt-get install postgresql)"
        exit 1
    fi
    echo "$dir"
}

# as_server CMD...: run CMD as the user the server runs as
as_server() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop() {
    local dir="$1"
    if [[ -z "$dir" || ! -f "$dir/nasflow-test-postgres" ]]; then
        say "$dir is not a folder this script created; not touching it"
        exit 1
    fi
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_server "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
}

start() {
    local bin dir port
    bin="$(bin_dir)"
    if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
        say "running as root but there is no 'postgres' user to run the server as"
        exit 1
    fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/nasflow-pg.XXXXXX")"
    touch "$dir/nasflow-test-postgres"  # marks the folder as ours for --stop
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$dir"
    fi
    port="${NASFLOW_TEST_POSTGRES_PORT:-54329}"
    while port_in_use "$port"; do
        port=$((port + 1))
    done
    # fsync off and no sync after initdb: the data is thrown away, so speed beats durability
    if ! as_server "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale \
        --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        say "initdb failed (log above)"
        exit 1
    fi
    if ! as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" \
        start >/dev/null; then
        cat "$dir/server.log" >&2 || true
        rm -rf "$dir"
        say "the server did not start (log above)"
        exit 1
    fi
    if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres nasflow_test; then
        stop "$dir"
        say "could not create the database nasflow_test"
        exit 1
    fi
    say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export NASFLOW_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/nasflow_test"
    echo "export NASFLOW_TEST_POSTGRES_DIR=$dir"
}

case "${1:-}" in
    --stop) stop "${2:-}" ;;
    "") start ;;
    *)
        say "usage: $0 [--stop DIR]"
        exit 2
        ;;
esac
