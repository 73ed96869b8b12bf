# A throwaway PostgreSQL cluster for the tests: sourced by .ci/run (and by hand: see README).
# pg_start installs Debian's postgresql if missing, runs initdb + pg_ctl in a temporary directory
# as the postgres user (CI runs as root, and postgres refuses to run as root), listens on
# 127.0.0.1 only, and exports RIG_TEST_PG_URL; pg_stop stops it and removes the directory.

pg_start() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
        else
            echo "postgresql is not installed (apt-get install -y postgresql)" >&2
            return 1
        fi
    fi
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    PG_DIR=$(mktemp -d /tmp/rig-pg.XXXXXX)
    local port=$((20000 + RANDOM % 20000))
    local run=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_DIR"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U rig --auth=trust -E UTF8 >/dev/null
    local tries=0
    # a random port may be taken: try a few
    until "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off" start >/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 5 ]; then
            echo "PostgreSQL did not start; its log:" >&2
            cat "$PG_DIR/log" >&2
            return 1
        fi
        port=$((20000 + RANDOM % 20000))
    done
    "${run[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U rig rig_test
    PG_BIN=$bin
    PG_RUN=("${run[@]}")
    export RIG_TEST_PG_URL="postgresql+psycopg://rig@127.0.0.1:$port/rig_test"
}

pg_stop() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
        rm -rf "$PG_DIR"
    fi
}
