#!/usr/bin/env bash
# quickstart.sh - from a fresh machine to a verified backup and restore of a VM disk.
#
# Usage: quickstart.sh [up|stop|status]
#   up (default)  set up the machine (deploy/setup.sh), start the dev stack, the
#                 edge-cloud emulator (a VM with two disks on real RBD images) and the
#                 five edgeback services as separate processes on RabbitMQ, each under
#                 its own broker user; then, only through the HTTP API (the `edgeback`
#                 CLI): sign in, register the platform, its Ceph storage and the storage
#                 node's dedup pool, create a backup job, run a full backup, change the
#                 VM's disks, run an incremental, and restore that point into a new VM
#                 (a restore run started with its verification code) and check each
#                 restored disk against the source's snapshot. The new VM,
#                 restored-<source name> with disks of the source's sizes, is made the
#                 way an operator would before a new-path restore: in the cloud's own
#                 console, here the emulator's `POST /emulator/vms` (edgeback never
#                 creates VMs); edgeback finds it by browsing the platform. Idempotent: a
#                 second run reuses what runs, what is registered and the new VM.
#   stop          stop the services and the emulator this script started
#   status        show what runs and the health of each service
#
# Everything lives under var/quickstart/ (logs, pids, secrets, the dedup pool). Overrides:
# EDGEBACK_QS_DIR, EDGEBACK_QS_NODE_PORT (8710), EDGEBACK_QS_EMULATOR_PORT (30188),
# EDGEBACK_QS_API_PORT (8440), EDGEBACK_QS_HEALTH_BASE (18700: the services answer on
# 18701-18705).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PROG=${0##*/}
QS=${EDGEBACK_QS_DIR:-$REPO/var/quickstart}
PY=$REPO/.venv/bin/python
SERVICES="catalog dedup api scheduler worker"
NODE_PORT=${EDGEBACK_QS_NODE_PORT:-8710}
EMULATOR_PORT=${EDGEBACK_QS_EMULATOR_PORT:-30188}
HEALTH_BASE=${EDGEBACK_QS_HEALTH_BASE:-18700}
API_PORT=${EDGEBACK_QS_API_PORT:-8440}
HOST_ID=quickstart-host
EB=$REPO/.venv/bin/edgeback
NODE_URL=http://127.0.0.1:$NODE_PORT
POOL_ID= POOL_SPACE= # the registered dedup pool and its space, for the summary
RESTORED= # the new VM restored into and its source, for the summary

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

admin_secret() { # the API's first admin and the catalog database that holds it, made with
    # this directory's secrets (a secrets.env of an older quickstart lacks them)
    grep -q '^QS_DATABASE=' "$QS/secrets.env" && return 0
    umask 077
    printf 'EDGEBACK_API_BOOTSTRAP_ADMIN=admin\nEDGEBACK_API_BOOTSTRAP_PASSWORD=%s\nQS_DATABASE=%s\n' \
        "$(openssl rand -hex 12)" "edgeback_qs_$(openssl rand -hex 5)" >>"$QS/secrets.env"
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
    (umask 077 && printf '%s' "$QS_SECRET_KEY" >"$QS/platform.sk") # off the command line
    if [ ! -s "$QS/emulator-state.json" ]; then
        log "seeding the edge-cloud emulator: a VM with 2 RBD disks in pool rbd"
        (cd "$REPO" && "$PY" -m tests.support.emulator seed --vms 1 --disks 2 --eligible \
            --conf "$CEPH_CONF" --pool rbd --state "$QS/emulator-state.json" --disk-mib 64)
    fi
    start_bg emulator "tests.support.emulator serve" env -C "$REPO" "$PY" -m tests.support.emulator serve \
        --port "$EMULATOR_PORT" --state "$QS/emulator-state.json" \
        --access-key "$QS_ACCESS_KEY" --secret-key-file "$QS/platform.sk"
    wait_http emulator "http://127.0.0.1:$EMULATOR_PORT/emulator/health" 60
}

pool_access() { # the backup host's files for pool "default": secret, node token, pool key
    mkdir -p "$QS/pools"
    [ -e "$QS/pools/default/pool.json" ] ||
        "$PY" -c 'import sys, pathlib; from edgeback_pools.pool_meta import create_pool; create_pool(pathlib.Path(sys.argv[1]), "default", "dedup")' "$QS/pools"
    mkdir -p -m 700 "$QS/pool-access"
    [ -f "$QS/pool-access/default.secret" ] || "$EB" key create "$QS/pool-access/default.secret" >/dev/null
    (umask 077 && printf '%s' "$EDGEBACK_DEDUP_TOKEN" >"$QS/pool-access/default.token")
    install -m 600 "$QS/pools/default/pool.key" "$QS/pool-access/default.key"
}

broker_url() { # broker_url SERVICE: its own broker user's URL (the catalog trusts by user)
    case $1 in
    catalog) echo "$EDGEBACK_AMQP_URL_CATALOG" ;;
    api) echo "$EDGEBACK_AMQP_URL_API" ;;
    scheduler) echo "$EDGEBACK_AMQP_URL_SCHEDULER" ;;
    dedup) echo "" ;; # the storage node uses no broker
    worker) env -u XDG_CONFIG_HOME bash "$REPO/deploy/dev-stack.sh" broker-user "host-$HOST_ID" host | tail -n1 ;;
    esac
}

own_secrets() { # own_secrets SERVICE: the secrets.env settings that service needs, no other
    case $1 in
    catalog) echo "EDGEBACK_CATALOG_MASTER_KEY=$EDGEBACK_CATALOG_MASTER_KEY" ;;
    dedup) printf '%s\n' "EDGEBACK_DEDUP_TOKEN=$EDGEBACK_DEDUP_TOKEN" \
        "EDGEBACK_DEDUP_ADMIN_TOKEN=$EDGEBACK_DEDUP_ADMIN_TOKEN" ;;
    api) printf '%s\n' "EDGEBACK_API_BOOTSTRAP_ADMIN=$EDGEBACK_API_BOOTSTRAP_ADMIN" \
        "EDGEBACK_API_BOOTSTRAP_PASSWORD=$EDGEBACK_API_BOOTSTRAP_PASSWORD" ;;
    esac
}

start_services() {
    pool_access
    local s url settings
    for s in $SERVICES; do
        if alive "$s" "edgeback_$s"; then
            log "$s already running (pid $(cat "$QS/$s.pid"))"
            continue
        fi
        url=$(broker_url "$s") || die "no broker user for $s"
        mapfile -t settings < <(own_secrets "$s")
        start_bg "$s" "edgeback_$s" env "${settings[@]}" \
            EDGEBACK_LOG_JSON=true EDGEBACK_AMQP_URL="$url" \
            "EDGEBACK_$(echo "$s" | tr a-z A-Z)_HEALTH_PORT=$(health_port "$s")" \
            EDGEBACK_DEDUP_DATA_DIR="$QS/pools" EDGEBACK_DEDUP_PORT="$NODE_PORT" \
            EDGEBACK_CATALOG_DATABASE="$QS_DATABASE" EDGEBACK_API_PORT="$API_PORT" \
            EDGEBACK_WORKER_HOST_ID="$HOST_ID" EDGEBACK_WORKER_DATA_DIR="$QS" \
            EDGEBACK_WORKER_POOL_DIR="$QS/pool-access" EDGEBACK_WORKER_HEARTBEAT_S=2 \
            EDGEBACK_WORKER_PROGRESS_INTERVAL_S=1 \
            "$PY" -m "edgeback_$s"
    done
    for s in $SERVICES; do
        wait_http "$s" "http://127.0.0.1:$(health_port "$s")/healthz" 60
        log "$s healthy on 127.0.0.1:$(health_port "$s")/healthz"
    done
}

api() { "$EB" "$@" --output json; } # one API call through the CLI, its JSON answer

# field EXPR [VALUE...]: EXPR, a Python expression written in this script, over the JSON
# on stdin (d) and the VALUEs (a[0], a[1], ...). Ids and names go in as VALUEs, never into
# EXPR: a value is data, whatever quotes or code it holds.
field() {
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {"d": d, "a": sys.argv[2:]}))' "$@"
}

sha_of() { rbd -c "$CEPH_CONF" export --no-progress "$1" - 2>/dev/null | sha256sum | cut -d' ' -f1; }

signin() {
    printf '%s\n' "$EDGEBACK_API_BOOTSTRAP_PASSWORD" |
        "$EB" login --api "http://127.0.0.1:$API_PORT" --user admin --password-stdin >/dev/null
    log "api: signed in as admin at http://127.0.0.1:$API_PORT"
    local t0=$SECONDS # the worker's heartbeat registers the backup host; an admin activates it
    until "$EB" host activate "$HOST_ID" >/dev/null 2>&1; do
        ((SECONDS - t0 < 60)) || die "backup host $HOST_ID never registered (see $QS/worker.log)"
        sleep 1
    done
    log "api: backup host $HOST_ID active"
}

register() { # the emulator as a platform and its Ceph storage (once); prints the platform id
    local pid
    pid=$(api platform list --name edge | field 'd[0]["id"] if d else ""')
    if [ -z "$pid" ]; then
        pid=$(api platform register --name edge --address 127.0.0.1 --port "$EMULATOR_PORT" \
            --no-ssl --access-key "$QS_ACCESS_KEY" --secret-key-file "$QS/platform.sk" \
            --host "$HOST_ID" | field 'd["id"]')
        log "api: platform 'edge' registered ($pid)"
    fi
    if [ "$(api storage list "$pid" | field 'len(d)')" = 0 ]; then
        api storage add "$pid" --name ceph --host "$HOST_ID" --pool rbd --conf "$CEPH_CONF" >/dev/null
        log "api: Ceph storage of 'edge' added (pool rbd)"
    fi
    echo "$pid"
}

register_pool() { # the node's dedup pool "default", checked from the backup host (once); prints its id
    local id
    id=$(api pool list --node-url "$NODE_URL" --name default | field '([p["id"] for p in d if p["name"] == "default"] or [""])[0]')
    if [ -z "$id" ]; then
        id=$(api pool register --name default --node-url "$NODE_URL" --host "$HOST_ID" \
            --description "quickstart dedup pool" | field 'd["id"]')
        log "api: pool 'default' of $NODE_URL registered ($id), checked from $HOST_ID"
    fi
    echo "$id"
}

SPACE='"%.1f GiB capacity, %.1f GiB free, %d chunks" % (d["status"]["capacity_bytes"] / 2**30, d["status"]["free_bytes"] / 2**30, d["status"]["chunks"])'

VMS_OF='sorted((v for h in d["hosts"] for v in h.get("vms") or []), key=lambda v: v["name"])'
VM_OF="[v for v in $VMS_OF if v['id'] == a[0]][0]" # the VM a[0]
DISKS_OF="$VM_OF['disks']"                          # its disks
IMAGE_OF="[x['volume_id'] or a[0] + '_disk' for x in $DISKS_OF if x['id'] == a[1]][0]" # its disk a[1]
NAMED="([v['id'] for v in $VMS_OF if v['name'] == a[0]] or [''])[0]" # the VM named a[0], or ''
HOST_OF='[h["id"] for h in d["hosts"] if any(v["id"] == a[0] for v in h.get("vms") or [])][0]'
NEW_VM="__import__('json').dumps({'name': a[1], 'host_id': $HOST_OF, 'disk_sizes': [x['size'] for x in $DISKS_OF]})"

backup() { # backup JOB TYPE: start a run, follow it to its end; prints its backup set's id
    local run
    run=$(api job start "$1" --type "$2" | field 'd["run_id"]')
    log "api: $2 backup run $run started; following it"
    local t0=$SECONDS # the catalog creates the run from the published StartRun
    until api run show "$run" >/dev/null 2>&1; do
        ((SECONDS - t0 < 60)) || die "run $run did not appear (see $QS/catalog.log)"
        sleep 0.5
    done
    "$EB" run watch "$run" >&2 || die "the $2 run did not succeed: edgeback run show $run"
    api backup-set list --run "$run" | field 'd[0]["id"]'
}

source_vm() { # source_vm JOBS TREE: the VM the quickstart job backs up, else the first VM
    # (by name) not made by this script
    local job_vm
    job_vm=$(field '([j["spec"]["content"]["vms"][0]["vm_id"] for j in d if j["spec"]["name"] == "quickstart"] or [""])[0]' <<<"$1")
    [ -n "$job_vm" ] && { echo "$job_vm"; return; }
    field "[v['id'] for v in $VMS_OF if not v['name'].startswith('restored-')][0]" <<<"$2"
}

new_vm() { # new_vm PLATFORM SRC TREE: the new VM restored-<name of SRC> with disks of SRC's
    # sizes, on SRC's physical host. Made, unless it exists, as an operator would before a
    # new-path restore: in the cloud's console (here the emulator's control route), then
    # found through the API. Prints its id.
    local name vm
    name=restored-$(field "$VM_OF['name']" "$2" <<<"$3")
    vm=$(api browse "$1" --keyword "$name" | field "$NAMED" "$name")
    if [ -z "$vm" ]; then
        curl -sS --fail-with-body -o /dev/null -X POST -H 'Content-Type: application/json' \
            --data "$(field "$NEW_VM" "$2" "$name" <<<"$3")" \
            "http://127.0.0.1:$EMULATOR_PORT/emulator/vms" >&2 ||
            die "the emulator did not create VM $name"
        log "cloud console (emulator): VM $name created, its disks blank and sized as VM $2's"
        vm=$(api browse "$1" --keyword "$name" | field "$NAMED" "$name")
        [ -n "$vm" ] || die "the new VM $name is not in the platform's inventory (edgeback browse $1)"
    fi
    log "api: new VM $name ($vm) found on the platform: the restore's target"
    echo "$vm"
}

demo() {
    local pid vms jobs src dst job set1 set2 images snap image restored want got
    signin
    pid=$(register)
    POOL_ID=$(register_pool)
    vms=$(api browse "$pid")
    jobs=$(api job list)
    src=$(source_vm "$jobs" "$vms")
    job=$(field '([j["id"] for j in d if j["spec"]["name"] == "quickstart"] or [""])[0]' <<<"$jobs")
    if [ -z "$job" ]; then
        job=$(api job create --name quickstart --type incremental --platform "$pid" --vm "$src" \
            --pool-id "$POOL_ID" | field 'd["id"]')
        log "api: backup job 'quickstart' created for VM $src"
    fi
    set1=$(backup "$job" full)
    log "demo: changing 8 MiB of each disk of VM $src, then an incremental backup"
    images=$(field "' '.join(x['volume_id'] or a[0] + '_disk' for x in $DISKS_OF)" "$src" <<<"$vms")
    for image in $images; do
        rbd -c "$CEPH_CONF" bench --io-type write --io-size 4M --io-total 8M --io-pattern rand \
            "rbd/$image" >/dev/null
    done
    set2=$(backup "$job" incremental)
    [ "$(api backup-set show "$set2" | field 'd["backup_set"]["backup_type"]')" = incremental ] ||
        die "backup set $set2 is not an incremental"
    dst=$(new_vm "$pid" "$src" "$vms")
    vms=$(api browse "$pid")
    log "demo: restoring the incremental restore point into the new VM $dst (new path) through a restore run"
    local maps=() created rid code disks_src disks_dst i
    read -r -a disks_src <<<"$(field "' '.join(x['id'] for x in $DISKS_OF)" "$src" <<<"$vms")"
    read -r -a disks_dst <<<"$(field "' '.join(x['id'] for x in $DISKS_OF)" "$dst" <<<"$vms")"
    for i in "${!disks_src[@]}"; do maps+=(--map "${disks_src[$i]}=${disks_dst[$i]}"); done
    created=$(api restore create --point "$set2" --host "$HOST_ID" --to-vm "$pid/$dst" "${maps[@]}" --no-start)
    rid=$(field 'd["restore"]["id"]' <<<"$created")
    code=$(field 'd["verification_code"]' <<<"$created")
    log "api: restore $rid created; starting it with its verification code"
    "$EB" restore start "$rid" --code "$code" --watch >&2 || die "the restore did not succeed: edgeback restore show $rid"
    for i in "${!disks_src[@]}"; do
        snap=$(api backup-set show "$set2" |
            field '[x["snapshot_name"] for x in d["disks"] if x["disk_id"] == a[0]][0]' "${disks_src[$i]}")
        image=$(field "$IMAGE_OF" "$src" "${disks_src[$i]}" <<<"$vms")
        restored=$(field "$IMAGE_OF" "$dst" "${disks_dst[$i]}" <<<"$vms")
        want=$(sha_of "rbd/$image@$snap") || die "cannot read rbd/$image@$snap"
        got=$(sha_of "rbd/$restored") || die "cannot read rbd/$restored"
        [ "$want" = "$got" ] || die "disk ${disks_dst[$i]} of VM $dst differs from its source snapshot ($got != $want)"
        log "demo: disk ${disks_dst[$i]} restored byte-identical to its snapshot (sha256 $want)"
    done
    log "demo: restored VM $dst is byte-identical to the snapshot of VM $src, disk by disk"
    RESTORED="$(field "$VM_OF['name']" "$dst" <<<"$vms") ($dst), from $(field "$VM_OF['name']" "$src" <<<"$vms")'s incremental (backup set $set2, restore $rid)"
    POOL_SPACE=$(api pool refresh "$POOL_ID" | field "$SPACE")
    log "api: pool 'default' now: $POOL_SPACE"
}

cmd_up() {
    bash "$REPO/deploy/setup.sh"
    bash "$REPO/deploy/dev-stack.sh" up
    eval "$(bash "$REPO/deploy/dev-stack.sh" env)"
    mkdir -p "$QS"
    secrets
    admin_secret
    # read into this shell only: each child gets its own (own_secrets), none gets them all
    # shellcheck disable=SC1091
    . "$QS/secrets.env"
    start_emulator
    start_services
    export XDG_CONFIG_HOME=$QS/cli # the CLI's session of the quickstart's admin
    demo
    cat >&2 <<EOF

edgeback is running (logs and pids in $QS):
  API            http://127.0.0.1:$API_PORT/api/v1   (docs: /api/v1/docs, OpenAPI: /api/v1/openapi.json)
  sign in        edgeback login --api http://127.0.0.1:$API_PORT --user admin
                 (password: EDGEBACK_API_BOOTSTRAP_PASSWORD in $QS/secrets.env)
  storage node   $NODE_URL   (token in $QS/secrets.env)
  pool default   $POOL_SPACE   (edgeback pool show $POOL_ID)
  restored VM    $RESTORED
  emulator       http://127.0.0.1:$EMULATOR_PORT  (edge-cloud API, signed requests)
  health         $(for s in $SERVICES; do printf '%s:%s ' "$s" "$(health_port "$s")"; done)
next steps:
  edgeback job list; edgeback run list --job JOB_ID; edgeback backup-set list --job JOB_ID
  edgeback browse PLATFORM_ID; edgeback restore points --vm VM; edgeback restore list
  docs/cli.md, docs/api.md, docs/runs.md, docs/restores.md
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
