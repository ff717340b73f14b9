#!/usr/bin/env bash
# quickstart.sh - from a fresh machine to a verified backup and restore of a VM disk.
#
# Usage: quickstart.sh [up|stop|status]
#   up (default)  set up the machine (deploy/setup.sh), start the dev stack, the
#                 edge-cloud emulator (seeded with VMs on real RBD disks) and the five
#                 edgeback services as separate processes, wait until each is healthy,
#                 then back up one VM disk (full, then incremental after a change)
#                 through the storage node, restore it into a new image and compare
#                 checksums with the snapshot. Idempotent: a second run reuses what runs.
#   stop          stop the services and the emulator this script started
#   status        show what runs and the health of each service
#
# Everything lives under var/quickstart/ (logs, pids, secrets, the dedup pool). Overrides:
# EDGEBACK_QS_DIR, EDGEBACK_QS_NODE_PORT (8710), EDGEBACK_QS_EMULATOR_PORT (30188),
# EDGEBACK_QS_HEALTH_BASE (18700: the services answer on 18701-18705).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PROG=${0##*/}
QS=${EDGEBACK_QS_DIR:-$REPO/var/quickstart}
PY=$REPO/.venv/bin/python
SERVICES="catalog dedup api scheduler worker"
NODE_PORT=${EDGEBACK_QS_NODE_PORT:-8710}
EMULATOR_PORT=${EDGEBACK_QS_EMULATOR_PORT:-30188}
HEALTH_BASE=${EDGEBACK_QS_HEALTH_BASE:-18700}

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

health_port() { # the /healthz port of a service: HEALTH_BASE + its position
    local i=1 s
    for s in $SERVICES; do
        [ "$s" = "$1" ] && { echo $((HEALTH_BASE + i)); return; }
        i=$((i + 1))
    done
}

alive() { # alive NAME: the pid in NAME.pid runs and is ours
    local pid
    pid=$(cat "$QS/$1.pid" 2>/dev/null) || return 1
    [ -d "/proc/$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

secrets() { # generated once, kept 0600: tokens, the catalog master key, platform keys
    [ -s "$QS/secrets.env" ] && return 0
    umask 077
    cat >"$QS/secrets.env" <<EOF
EDGEBACK_DEDUP_TOKEN=$(openssl rand -hex 24)
EDGEBACK_DEDUP_ADMIN_TOKEN=$(openssl rand -hex 24)
EDGEBACK_CATALOG_MASTER_KEY=$(openssl rand -base64 32)
QS_ACCESS_KEY=AK$(openssl rand -hex 8)
QS_SECRET_KEY=$(openssl rand -hex 24)
EOF
}

start_bg() { # start_bg NAME MATCH CMD...: run CMD in the background unless it runs
    local name=$1 match=$2
    shift 2
    if alive "$name" "$match"; then
        log "$name already running (pid $(cat "$QS/$name.pid"))"
        return 0
    fi
    log "starting $name"
    nohup "$@" >"$QS/$name.log" 2>&1 &
    echo $! >"$QS/$name.pid"
}

wait_http() { # wait_http WHAT URL SECONDS
    local t0=$SECONDS
    until curl -fsS -o /dev/null "$2" 2>/dev/null; do
        ((SECONDS - t0 < $3)) || die "$1 not healthy after $3 s (see $QS/*.log): $(curl -sS "$2" 2>&1 | head -c 300)"
        sleep 0.3
    done
}

start_emulator() {
    if [ ! -s "$QS/emulator-state.json" ]; then
        log "seeding the edge-cloud emulator: 4 VMs with real RBD disks in pool rbd"
        (cd "$REPO" && "$PY" -m tests.support.emulator seed --vms 4 --conf "$CEPH_CONF" \
            --pool rbd --state "$QS/emulator-state.json" --disk-mib 64,128)
    fi
    start_bg emulator "tests.support.emulator serve" env -C "$REPO" "$PY" -m tests.support.emulator serve \
        --port "$EMULATOR_PORT" --state "$QS/emulator-state.json" \
        --access-key "$QS_ACCESS_KEY" --secret-key "$QS_SECRET_KEY"
    wait_http emulator "http://127.0.0.1:$EMULATOR_PORT/emulator/health" 60
}

start_services() {
    mkdir -p "$QS/pools"
    [ -e "$QS/pools/default/pool.json" ] ||
        "$PY" -c 'import sys, pathlib; from edgeback_pools.pool_meta import create_pool; create_pool(pathlib.Path(sys.argv[1]), "default", "dedup")' "$QS/pools"
    local s
    for s in $SERVICES; do
        start_bg "$s" "edgeback_$s" env \
            EDGEBACK_LOG_JSON=true \
            "EDGEBACK_$(echo "$s" | tr a-z A-Z)_HEALTH_PORT=$(health_port "$s")" \
            EDGEBACK_DEDUP_DATA_DIR="$QS/pools" EDGEBACK_DEDUP_PORT="$NODE_PORT" \
            EDGEBACK_CATALOG_DATABASE=edgeback_quickstart \
            EDGEBACK_WORKER_HOST_ID=quickstart-host EDGEBACK_WORKER_DATA_DIR="$QS" \
            "$PY" -m "edgeback_$s"
    done
    for s in $SERVICES; do
        wait_http "$s" "http://127.0.0.1:$(health_port "$s")/healthz" 60
        log "$s healthy on 127.0.0.1:$(health_port "$s")/healthz"
    done
}

platform() { # the quickstart's calls to the edge-cloud API (signed, through our client)
    (cd "$REPO" && "$PY" -m tests.support.demo "$@" --port "$EMULATOR_PORT")
}

sha_of() { rbd -c "$CEPH_CONF" export "$1" - 2>/dev/null | sha256sum | cut -d' ' -f1; }

demo() {
    local cli=("$REPO/.venv/bin/edgeback" disk) key=(--key-file "$QS/pools/default/pool.key")
    # the backup host's pool secret (docs/encryption.md): authenticates the manifests
    [ -f "$QS/default.secret" ] || "$REPO/.venv/bin/edgeback" key create "$QS/default.secret"
    key+=(--secret-key-file "$QS/default.secret")
    local node=("http://127.0.0.1:$NODE_PORT" --token-env EDGEBACK_DEDUP_TOKEN "${key[@]}")
    local image snap1 vm snap_id1 snap2 snap_id2 restored=qs-restored-$$ want got
    log "demo: asking the platform for a consistent snapshot of a running VM"
    read -r image snap1 vm snap_id1 <<<"$(platform snapshot)"
    log "demo: full backup of rbd/$image@$snap1 (VM $vm) through the storage node"
    "${cli[@]}" backup --image "rbd/$image" --snap "$snap1" --vm "$vm" --disk "$image" \
        --version "$snap_id1" --to "${node[@]}"
    log "demo: changing 8 MiB of the disk, a second snapshot, an incremental backup"
    rbd -c "$CEPH_CONF" bench --io-type write --io-size 4M --io-total 8M --io-pattern rand \
        "rbd/$image" >/dev/null
    read -r image snap2 vm snap_id2 <<<"$(platform snapshot)"
    "${cli[@]}" backup --image "rbd/$image" --snap "$snap2" --base-snap "$snap1" \
        --base "$vm/$image/$snap_id1" --vm "$vm" --disk "$image" --version "$snap_id2" \
        --to "${node[@]}"
    log "demo: restoring the incremental version into rbd/$restored"
    "${cli[@]}" restore "$vm/$image/$snap_id2" --image "rbd/$restored" --from "${node[@]}"
    want=$(sha_of "rbd/$image@$snap2")
    got=$(sha_of "rbd/$restored")
    rbd -c "$CEPH_CONF" rm --no-progress "rbd/$restored" >/dev/null
    platform delete "$vm" "$snap_id1"
    platform delete "$vm" "$snap_id2"
    [ "$want" = "$got" ] || die "restored image differs from the snapshot ($got != $want)"
    log "demo: restored image is byte-identical to the snapshot (sha256 $want)"
}

cmd_up() {
    bash "$REPO/deploy/setup.sh"
    bash "$REPO/deploy/dev-stack.sh" up
    eval "$(bash "$REPO/deploy/dev-stack.sh" env)"
    mkdir -p "$QS"
    secrets
    set -a
    # shellcheck disable=SC1091
    . "$QS/secrets.env"
    set +a
    start_emulator
    start_services
    demo
    cat >&2 <<EOF

edgeback is running (logs and pids in $QS):
  storage node   http://127.0.0.1:$NODE_PORT   (token in $QS/secrets.env)
  emulator       http://127.0.0.1:$EMULATOR_PORT  (edge-cloud API, signed requests)
  health         $(for s in $SERVICES; do printf '%s:%s ' "$s" "$(health_port "$s")"; done)
  stop with      bash deploy/quickstart.sh stop
EOF
}

cmd_stop() {
    local name pid
    for name in worker scheduler api dedup catalog emulator; do
        pid=$(cat "$QS/$name.pid" 2>/dev/null) || continue
        if [ -d "/proc/$pid" ]; then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            timeout 40 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$QS/$name.pid"
    done
}

cmd_status() {
    local s
    for s in $SERVICES; do
        printf '%-10s ' "$s"
        curl -sS "http://127.0.0.1:$(health_port "$s")/healthz" 2>/dev/null || printf 'not running'
        echo
    done
}

case ${1:-up} in
up) cmd_up ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) die "usage: $PROG [up|stop|status]" ;;
esac
