#!/usr/bin/env bash
# dev-stack.sh - the services edgeback's integration tests need, on 127.0.0.1.
#
# Usage: dev-stack.sh up | down | status | env | broker-user NAME ROLE | drop-broker-user NAME
#   up      start what is not running (idempotent; adopts what already runs):
#           RabbitMQ (Debian's rabbitmq-server) with a TLS listener (dev CA) and one
#           broker user per service, the catalog DB (mongoeco wire server from
#           .venv-catalogdb), the one-node Ceph cluster with radosgw
#   down    stop only what `up` started (remembered under VAR/dev-stack/)
#   status  one line per component; exit 1 if any is not serving
#   env     print `export` lines for the tests and the services
#   broker-user NAME ROLE [PREFIX]  create (or update) a broker user, ROLE service | host (a
#           backup host's user is host-<host id>: its own queues and events only);
#           prints its amqps:// URL
#   drop-broker-user NAME   delete it
#
# Data lives under VAR (default $REPO/var). Overrides for a second instance:
#   EDGEBACK_VAR_DIR, EDGEBACK_CATALOGDB_PORT (27017), CEPH_DEV_MON_PORT (3300),
#   CEPH_DEV_MON_V1_PORT (6789), CEPH_DEV_RGW_PORT (7480). RabbitMQ is always the
#   machine's one: plain AMQP on EDGEBACK_AMQP_PORT (5672, guest/guest, left as the
#   machine has it), AMQP over TLS on EDGEBACK_AMQPS_PORT (5671); its CA, certificate,
#   TLS config and user passwords in EDGEBACK_RABBITMQ_DIR (deploy/rabbitmq-dev.sh).

set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PROG=${0##*/}
VAR=${EDGEBACK_VAR_DIR:-$REPO/var}
AMQP_PORT=${EDGEBACK_AMQP_PORT:-5672}
CATALOG_PORT=${EDGEBACK_CATALOGDB_PORT:-27017}
RGW_PORT=${CEPH_DEV_RGW_PORT:-7480}
CEPH_SCRIPT=$REPO/deploy/ceph-dev-cluster.sh
CATALOG_DIR=$VAR/catalogdb
CATALOG_PID=$CATALOG_DIR/server.pid
CEPH_DIR=$VAR/ceph
STARTED=$VAR/dev-stack # one marker file per component that `up` started
TIMEOUT=${EDGEBACK_DEV_STACK_TIMEOUT:-90}

# shellcheck source=deploy/rabbitmq-dev.sh
. "$REPO/deploy/rabbitmq-dev.sh"

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mongo_url() { echo "mongodb://127.0.0.1:$CATALOG_PORT/?directConnection=true"; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - t0 < secs)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

mark_started() { mkdir -p "$STARTED" && touch "$STARTED/$1"; }

# ---------------------------------------------------------------- RabbitMQ
# send the AMQP 0-9-1 protocol header; a broker answers with a method frame (type 1)
amqp_ping() {
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AMQP_PORT && printf 'AMQP\0\0\11\1' >&3 &&
        head -c 1 <&3 | od -An -tx1" 2>/dev/null | grep -q 01
}

rabbitmq_up() {
    rabbitmq_tls_material
    if amqp_ping; then
        log "rabbitmq: answering on 127.0.0.1:$AMQP_PORT"
        amqps_ping || rabbitmq_restart_for_tls
    else
        [ "$AMQP_PORT" = 5672 ] || die "nothing answers AMQP on $AMQP_PORT (only 5672 can be started)"
        rabbitmq_start
        mark_started rabbitmq
    fi
    wait_for "$TIMEOUT" "RabbitMQ on 127.0.0.1:$AMQP_PORT" amqp_ping
    wait_for "$TIMEOUT" "RabbitMQ over TLS on 127.0.0.1:$AMQPS_PORT" amqps_ping
    rabbitmqctl -q await_startup
    rabbitmq_users
}

rabbitmq_down() {
    [ -e "$STARTED/rabbitmq" ] || return 0
    log "rabbitmq: stopping (dev-stack started it)"
    rabbitmqctl -q stop || true
    rm -f "$STARTED/rabbitmq"
}

# ---------------------------------------------------------------- catalog DB
# is PID a mongoeco server of this repo serving this VAR's data file on our port?
catalog_is_ours() {
    local pid=$1 cwd args
    [ -r "/proc/$pid/cmdline" ] || return 1
    mapfile -d '' -t args <"/proc/$pid/cmdline"
    cwd=$(readlink "/proc/$pid/cwd") || return 1
    [ "${#args[@]}" -ge 4 ] || return 1
    [ "$(cd "$cwd" && realpath -m -- "${args[1]}")" = "$REPO/deploy/catalog-db/server.py" ] &&
        [ "${args[2]}" = "$CATALOG_PORT" ] &&
        [ "$(cd "$cwd" && realpath -m -- "${args[3]}")" = "$CATALOG_DIR/catalog.sqlite" ]
}

catalog_pid() { # pid of our live server: from the pid file, else the port's listener
    local pid
    if [ -s "$CATALOG_PID" ] && pid=$(cat "$CATALOG_PID") && catalog_is_ours "$pid"; then
        echo "$pid"
        return 0
    fi
    pid=$(ss -ltnpH "sport = :$CATALOG_PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [ -n "$pid" ] && catalog_is_ours "$pid" && echo "$pid"
}

catalog_ping() {
    "$REPO/.venv/bin/python" -c '
import sys, pymongo
with pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000) as client:
    client.admin.command("ping")
' "$(mongo_url)"
}

catalog_up() {
    local pid
    [ -x "$REPO/.venv-catalogdb/bin/python" ] || die ".venv-catalogdb missing: run deploy/setup.sh"
    mkdir -p "$CATALOG_DIR"
    if pid=$(catalog_pid); then
        echo "$pid" >"$CATALOG_PID"
        log "catalog DB: running (pid $pid) on 127.0.0.1:$CATALOG_PORT"
    else
        ss -ltnH "sport = :$CATALOG_PORT" | grep -q . &&
            die "127.0.0.1:$CATALOG_PORT is taken by another process (set EDGEBACK_CATALOGDB_PORT)"
        log "catalog DB: starting on 127.0.0.1:$CATALOG_PORT, log $CATALOG_DIR/server.log"
        # setsid: the server must outlive this shell and its process group (CI, ^C)
        setsid "$REPO/.venv-catalogdb/bin/python" "$REPO/deploy/catalog-db/server.py" \
            "$CATALOG_PORT" "$CATALOG_DIR/catalog.sqlite" >>"$CATALOG_DIR/server.log" 2>&1 </dev/null &
        echo $! >"$CATALOG_PID"
        mark_started catalogdb
    fi
    local t0=$SECONDS
    until catalog_ping >/dev/null 2>&1; do
        if ! catalog_pid >/dev/null; then
            tail -20 "$CATALOG_DIR/server.log" >&2
            die "catalog DB exited"
        fi
        ((SECONDS - t0 < TIMEOUT)) || die "catalog DB did not answer a ping within ${TIMEOUT}s"
        sleep 0.3
    done
}

catalog_down() {
    local pid t0=$SECONDS
    [ -e "$STARTED/catalogdb" ] || return 0
    if pid=$(catalog_pid); then
        log "catalog DB: stopping pid $pid"
        kill -TERM "$pid"
        while [ -d "/proc/$pid" ] && ((SECONDS - t0 < 15)); do sleep 0.1; done
        if [ -d "/proc/$pid" ]; then kill -KILL "$pid"; fi
    fi
    rm -f "$STARTED/catalogdb" "$CATALOG_PID"
}

# ---------------------------------------------------------------- Ceph
ceph_up() {
    if ! bash "$CEPH_SCRIPT" running "$CEPH_DIR" --rgw 2>/dev/null; then mark_started ceph; fi
    bash "$CEPH_SCRIPT" start "$CEPH_DIR" --rgw
}

ceph_down() {
    [ -e "$STARTED/ceph" ] || return 0
    bash "$CEPH_SCRIPT" stop "$CEPH_DIR"
    rm -f "$STARTED/ceph"
}

# ---------------------------------------------------------------- commands
cmd_up() {
    local t0=$SECONDS
    rabbitmq_up
    catalog_up
    ceph_up
    log "dev stack up in $((SECONDS - t0))s - use: eval \"\$(bash $0 env)\""
}

cmd_down() {
    # reverse order of up
    ceph_down
    catalog_down
    rabbitmq_down
    log "dev stack down (components it did not start are left running)"
}

owner() { if [ -e "$STARTED/$1" ]; then echo "started by dev-stack"; else echo "adopted"; fi; }

cmd_status() {
    local rc=0 pid
    if amqp_ping && amqps_ping; then
        echo "rabbitmq   up    127.0.0.1:$AMQP_PORT, amqps :$AMQPS_PORT ($(owner rabbitmq))"
    else
        echo "rabbitmq   down  127.0.0.1:$AMQP_PORT"
        rc=1
    fi
    if pid=$(catalog_pid) && catalog_ping >/dev/null 2>&1; then
        echo "catalogdb  up    127.0.0.1:$CATALOG_PORT pid $pid ($(owner catalogdb))"
    else
        echo "catalogdb  down  127.0.0.1:$CATALOG_PORT"
        rc=1
    fi
    if bash "$CEPH_SCRIPT" running "$CEPH_DIR" --rgw 2>/dev/null; then
        echo "ceph       up    $CEPH_DIR, rgw 127.0.0.1:$RGW_PORT ($(owner ceph))"
    else
        echo "ceph       down  $CEPH_DIR"
        rc=1
    fi
    return $rc
}

cmd_env() {
    local key secret
    key=$(bash "$CEPH_SCRIPT" env "$CEPH_DIR" | sed -n 's/^export AWS_ACCESS_KEY_ID=//p')
    secret=$(bash "$CEPH_SCRIPT" env "$CEPH_DIR" | sed -n 's/^export AWS_SECRET_ACCESS_KEY=//p')
    printf 'export %s=%q\n' \
        EDGEBACK_AMQP_URL "$(amqps_url edgeback-test)" \
        EDGEBACK_AMQP_CAFILE "$RMQ_DIR/ca.pem" \
        EDGEBACK_AMQP_URL_API "$(amqps_url api)" \
        EDGEBACK_AMQP_URL_SCHEDULER "$(amqps_url scheduler)" \
        EDGEBACK_AMQP_URL_CATALOG "$(amqps_url catalog)" \
        EDGEBACK_AMQP_URL_DEDUP "$(amqps_url dedup)" \
        EDGEBACK_AMQP_PLAIN_URL "amqp://guest:guest@127.0.0.1:$AMQP_PORT/" \
        EDGEBACK_MONGO_URL "$(mongo_url)" \
        EDGEBACK_BUS_DEAD_LETTER_STRATEGY at-most-once \
        CEPH_CONF "$CEPH_DIR/ceph.conf" \
        EDGEBACK_CEPH_POOL rbd \
        S3_ENDPOINT_URL "http://127.0.0.1:$RGW_PORT" \
        AWS_ACCESS_KEY_ID "$key" \
        AWS_SECRET_ACCESS_KEY "$secret" \
        AWS_DEFAULT_REGION default
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) [ -d "$CEPH_DIR" ] || die "$CEPH_DIR missing: run '$0 up' first"; cmd_env ;;
broker-user) [ $# = 3 ] || [ $# = 4 ] || die "usage: $0 broker-user NAME service|host [PREFIX]"
    broker_user "$2" "$3" "${4:-}" ;;
drop-broker-user) [ $# = 2 ] || die "usage: $0 drop-broker-user NAME"; drop_broker_user "$2" ;;
*) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
