#!/usr/bin/env bash
# PostgreSQL 15 (Debian postgresql-15) on 127.0.0.1:15432 for the tests, with fsync off, and a
# second, TLS-only cluster on the next port with a certificate for 127.0.0.1 from a CA made at
# each start (its own cluster, so that the first one's clients, which prefer TLS when offered,
# keep talking plain TCP as before).
#   start    install if missing, create fresh clusters, start them, record
#            RAGPLANE_TEST_POSTGRES_URL, RAGPLANE_TEST_POSTGRES_TLS_URL and
#            RAGPLANE_TEST_POSTGRES_TLS_CA (the CA's PEM file)
#   stop     stop both servers (idempotent)
#   down|up  stop / start the first server on its existing data (the restart fault test)
#   restart  down, then up
# initdb refuses to run as root, so the cluster belongs to the postgres user (runuser).
source "$(dirname "$0")/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
PORT=${RAGPLANE_POSTGRES_PORT:-15432}
DIR=$RAGPLANE_SVC_DIR/postgres
TLS_PORT=$((PORT + 1))
TLS_DIR=$DIR/tls

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

# The TLS-only cluster: `hostssl` lines only, so a client that does not ask for TLS is refused.
start_tls() {
  bash "$(dirname "$0")/make-tls.sh" "$TLS_DIR" "IP:127.0.0.1,DNS:localhost"
  # PostgreSQL serves a key only when its owner alone can read it.
  chown -R postgres:postgres "$TLS_DIR"; chmod 600 "$TLS_DIR/server.key"
  as_pg "$PGBIN/initdb" -D "$DIR/tls-data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$DIR/initdb-tls.log"
  printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 trust" >"$DIR/tls-data/pg_hba.conf"
  as_pg "$PGBIN/pg_ctl" -D "$DIR/tls-data" -l "$DIR/postgres-tls.log" -w -t 30 \
    -o "-p $TLS_PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$TLS_DIR/server.crt -c ssl_key_file=$TLS_DIR/server.key" \
    start >/dev/null
  svc_wait postgres-tls 30 "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$TLS_PORT"
}

down_tls() {
  [ -f "$DIR/tls-data/postmaster.pid" ] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$DIR/tls-data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

install() { svc_apt postgresql-15 openssl; }

case "${1:-}" in
  install) install ;;
  start)
    install
    down; down_tls
    svc_port_free "$PORT" || { echo "FAIL: port $PORT is taken"; exit 1; }
    svc_port_free "$TLS_PORT" || { echo "FAIL: port $TLS_PORT is taken"; exit 1; }
    rm -rf "$DIR"; mkdir -p "$DIR"; chown postgres:postgres "$DIR"
    # The postgres user must be able to reach $DIR through every parent directory.
    as_pg test -w "$DIR" || { echo "FAIL: user postgres cannot write $DIR; set RAGPLANE_SVC_DIR"; exit 1; }
    as_pg "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
      >"$DIR/initdb.log"
    up
    start_tls
    svc_env RAGPLANE_TEST_POSTGRES_URL "postgres://postgres@127.0.0.1:$PORT/postgres"
    svc_env RAGPLANE_TEST_POSTGRES_TLS_URL "postgres://postgres@127.0.0.1:$TLS_PORT/postgres"
    svc_env RAGPLANE_TEST_POSTGRES_TLS_CA "$TLS_DIR/ca.crt"
    ;;
  stop) down; down_tls ;;
  down) down ;;
  up) up ;;
  restart) down; up ;;
  *) echo "usage: $0 install|start|stop|down|up|restart" >&2; exit 2 ;;
esac
