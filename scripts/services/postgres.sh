#!/usr/bin/env bash
# PostgreSQL 15 (Debian postgresql-15) on 127.0.0.1:15432 for the tests, with fsync off.
#   start    install if missing, create a fresh cluster, start it, record RAGPLANE_TEST_POSTGRES_URL
#   stop     stop the server (idempotent)
#   down|up  stop / start the server on its existing data (the restart fault test uses these)
#   restart  down, then up
# initdb refuses to run as root, so the cluster belongs to the postgres user (runuser).
source "$(dirname "$0")/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
PORT=${RAGPLANE_POSTGRES_PORT:-15432}
DIR=$RAGPLANE_SVC_DIR/postgres

as_pg() { runuser -u postgres -- "$@"; }
ready() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

up() {
  as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  svc_wait postgres 30 ready
}

down() {
  [ -f "$DIR/data/postmaster.pid" ] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

install() { svc_apt postgresql-15; }

case "${1:-}" in
  install) install ;;
  start)
    install
    down
    svc_port_free "$PORT" || { echo "FAIL: port $PORT is taken"; exit 1; }
    rm -rf "$DIR"; mkdir -p "$DIR"; chown postgres:postgres "$DIR"
    # The postgres user must be able to reach $DIR through every parent directory.
    as_pg test -w "$DIR" || { echo "FAIL: user postgres cannot write $DIR; set RAGPLANE_SVC_DIR"; exit 1; }
    as_pg "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
      >"$DIR/initdb.log"
    up
    svc_env RAGPLANE_TEST_POSTGRES_URL "postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop) down ;;
  down) down ;;
  up) up ;;
  restart) down; up ;;
  *) echo "usage: $0 install|start|stop|down|up|restart" >&2; exit 2 ;;
esac
