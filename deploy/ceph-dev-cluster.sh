#!/usr/bin/env bash
# ceph-dev-cluster.sh - throw-away single-node Ceph cluster for development and CI.
#
# edgeback's copy of the tested recipe (docs/dev-stack.md). deploy/dev-stack.sh runs
# `start var/ceph --rgw`; deploy/setup.sh installs the packages and bridges the
# Python bindings into .venv.
#
# Uses Debian 12's Ceph 16.2 (pacific) packages. No systemd, no cephadm, no
# /etc/ceph, no /var/lib/ceph: every file (config, keyrings, mon store, OSD
# block file, logs, pid files, admin sockets) lives under DIR. All daemons bind
# to 127.0.0.1 only. cephx stays on.
#
# Usage:
#   ceph-dev-cluster.sh install                  apt-get install the needed packages that are missing
#   ceph-dev-cluster.sh start  DIR [options]     create (first time) and start the cluster
#       --rgw            also start radosgw on 127.0.0.1:$CEPH_DEV_RGW_PORT (default 7480)
#                        and create the S3 user 'dev' (keys: see `env`)
#       --no-mgr         do not run ceph-mgr (saves ~260 MB RSS). RBD I/O works, but
#                        `ceph -s`/`ceph df` show no PG/usage data, mgr-backed commands
#                        hang (`ceph osd purge`, `ceph pg stat`, `rbd perf image iostat`)
#                        or fail (`rbd task add`); MGR_DOWN is muted
#       --memstore       OSD on memstore (RAM, ~2x the data size in RSS) instead of
#                        bluestore on a sparse file; only honoured when the OSD is created
#       --osd-size-gb N  size of the sparse bluestore file / memstore (default 10 / 2)
#   ceph-dev-cluster.sh stop   DIR                stop the daemons started from DIR (pid files)
#   ceph-dev-cluster.sh status DIR                daemon pids + `ceph -s`
#   ceph-dev-cluster.sh running DIR [--rgw]       exit 0 if mon, mgr, osd (and rgw) all run
#   ceph-dev-cluster.sh env    DIR                print shell exports (CEPH_CONF, keyring, S3)
#   ceph-dev-cluster.sh wipe   DIR                stop, then delete DIR
#
# `start` is idempotent: it creates what is missing and starts what is not
# running, then waits until pool 'rbd' accepts writes. Running it twice is a no-op.
#
# Environment overrides: CEPH_DEV_MON_PORT (msgr2, default 3300),
# CEPH_DEV_MON_V1_PORT (legacy msgr1, default 6789), CEPH_DEV_RGW_PORT (7480),
# CEPH_DEV_TIMEOUT (seconds to wait for readiness, default 120).
# Two clusters on one machine need different ports.
#
# Keep DIR short: admin socket paths (DIR/run/ceph-osd.0.asok) must stay
# under 107 characters (unix socket limit).

set -euo pipefail
# libceph-common reads CEPH_ARGS, CEPH_KEYRING and CEPH_CONF from the environment in
# every daemon; an exported CEPH_KEYRING (client.admin) makes ceph-mgr/radosgw fail cephx
# ("handle_auth_bad_method"). Everything here passes -c explicitly.
unset CEPH_ARGS CEPH_KEYRING CEPH_CONF

PROG=${0##*/}
MON_PORT=${CEPH_DEV_MON_PORT:-3300}
MON_V1_PORT=${CEPH_DEV_MON_V1_PORT:-6789}
RGW_PORT=${CEPH_DEV_RGW_PORT:-7480}
TIMEOUT=${CEPH_DEV_TIMEOUT:-120}
S3_ACCESS_KEY=${CEPH_DEV_S3_ACCESS_KEY:-DEVACCESSKEY0000000}
S3_SECRET_KEY=${CEPH_DEV_S3_SECRET_KEY:-devsecretkey0000000000000000000000000000}
MON_ID=a
MGR_ID=x
OSD_ID=0
RGW_NAME=client.rgw.gw
PACKAGES="ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd radosgw uuid-runtime"

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

# ---------------------------------------------------------------- helpers
set_dir() { # set_dir DIR [create]
    [ -n "${1:-}" ] || usage
    if [ "${2:-}" = create ]; then mkdir -p "$1"; fi
    [ -d "$1" ] || die "$1: no such directory"
    DIR=$(cd "$1" && pwd -P)
    CONF=$DIR/ceph.conf
    KEYRING=$DIR/keyring
    local sock="$DIR/run/ceph-$RGW_NAME.asok"
    [ ${#sock} -le 107 ] || die "DIR too long: admin socket path $sock exceeds 107 bytes"
}

ceph_cmd() { timeout 60 ceph -c "$CONF" --connect-timeout 15 "$@"; }

pidfile() { echo "$DIR/run/$1.pid"; }

# pid of a daemon started from this DIR, if it is alive (checks the command line
# mentions our ceph.conf, so a recycled pid is never taken for ours)
live_pid() {
    local f pid
    f=$(pidfile "$1")
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
    echo "$pid"
}

# start a self-daemonizing ceph daemon; its pre-fork stderr goes to DIR/log/NAME.start.log
start_daemon() {
    local name=$1
    shift
    "$@" >>"$DIR/log/$name.start.log" 2>&1 || { tail -20 "$DIR/log/$name.start.log" >&2; die "$name failed to start"; }
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - t0 >= secs)); then die "timed out after ${secs}s waiting for: $what"; fi
        sleep 0.5
    done
}

check_tools() {
    local b missing=""
    for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados rbd uuidgen; do
        command -v "$b" >/dev/null || missing="$missing $b"
    done
    [ -z "$missing" ] || die "missing:$missing (run: $PROG install)"
}

write_conf() {
    local objectstore=$1 size_bytes=$2
    cat >"$CONF.tmp" <<EOF
# generated by $PROG - rewritten on every start
[global]
fsid = $(cat "$DIR/fsid")
mon_host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $DIR/run
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[client]
keyring = $KEYRING

[mon]
mon_data = $DIR/mon/\$cluster-\$id
keyring = $DIR/mon/\$cluster-\$id/keyring
log_file = $DIR/log/\$cluster-\$name.log
mon_cluster_log_file = $DIR/log/\$cluster.log
pid_file = $DIR/run/\$name.pid
mon_memory_target = 268435456

[mgr]
mgr_data = $DIR/mgr/\$cluster-\$id
keyring = $DIR/mgr/\$cluster-\$id/keyring
log_file = $DIR/log/\$cluster-\$name.log
pid_file = $DIR/run/\$name.pid
# not always-on, not needed: saves ~45 MB RSS (disabling always-on ones gives HEALTH_ERR)
mgr_disabled_modules = diskprediction_local iostat nfs restful

[osd]
osd_data = $DIR/osd/\$cluster-\$id
keyring = $DIR/osd/\$cluster-\$id/keyring
log_file = $DIR/log/\$cluster-\$name.log
pid_file = $DIR/run/\$name.pid
osd_objectstore = $objectstore
osd_crush_update_on_start = true
bluestore_block_create = true
bluestore_fsck_on_mkfs = false
bluestore_block_size = $size_bytes
memstore_device_bytes = $size_bytes
# memstore only saves its data on a clean umount, which the default fast shutdown skips
osd_fast_shutdown = $([ "$objectstore" = memstore ] && echo false || echo true)
osd_memory_target = 1073741824
osd_memory_cache_min = 134217728
# removed snapshots' objects are trimmed at once, not one every 5 s (the hdd default):
# tests and benchmarks delete images with snapshots all the time, and the space only
# comes back once the clones are trimmed (a 10 GiB OSD filled up within minutes)
osd_snap_trim_sleep_hdd = 0

[$RGW_NAME]
rgw_data = $DIR/rgw
keyring = $DIR/rgw/keyring
log_file = $DIR/log/\$cluster-\$name.log
pid_file = $DIR/run/\$name.pid
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_dns_name = localhost
EOF
    mv "$CONF.tmp" "$CONF"
}

# ---------------------------------------------------------------- daemons
start_mon() {
    local mondata=$DIR/mon/ceph-$MON_ID
    if [ ! -e "$mondata/done" ]; then
        log "creating mon.$MON_ID"
        rm -rf "$mondata"
        mkdir -p "$mondata"
        local tmp=$DIR/bootstrap
        rm -rf "$tmp"
        mkdir -p "$tmp"
        ceph-authtool --create-keyring "$tmp/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
        if [ ! -s "$KEYRING" ]; then
            ceph-authtool --create-keyring "$KEYRING" --gen-key -n client.admin \
                --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
        fi
        ceph-authtool "$tmp/mon.keyring" --import-keyring "$KEYRING" >/dev/null
        monmaptool --create --fsid "$(cat "$DIR/fsid")" \
            --addv "$MON_ID" "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$tmp/monmap" >/dev/null
        ceph-mon -c "$CONF" --mkfs -i "$MON_ID" --monmap "$tmp/monmap" --keyring "$tmp/mon.keyring"
        rm -rf "$tmp"
        touch "$mondata/done"
    fi
    if live_pid "mon.$MON_ID" >/dev/null; then
        log "mon.$MON_ID already running"
    else
        port_busy "$MON_PORT" && die "127.0.0.1:$MON_PORT already in use (another cluster? set CEPH_DEV_MON_PORT)"
        port_busy "$MON_V1_PORT" && die "127.0.0.1:$MON_V1_PORT already in use (set CEPH_DEV_MON_V1_PORT)"
        log "starting mon.$MON_ID"
        start_daemon "mon.$MON_ID" ceph-mon -c "$CONF" -i "$MON_ID"
    fi
    wait_for "$TIMEOUT" "mon quorum" ceph_cmd mon stat
}

start_mgr() {
    local mgrdata=$DIR/mgr/ceph-$MGR_ID
    mkdir -p "$mgrdata"
    if [ ! -s "$mgrdata/keyring" ]; then
        ceph_cmd auth get-or-create "mgr.$MGR_ID" mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
            -o "$mgrdata/keyring"
    fi
    if live_pid "mgr.$MGR_ID" >/dev/null; then
        log "mgr.$MGR_ID already running"
    else
        log "starting mgr.$MGR_ID"
        start_daemon "mgr.$MGR_ID" ceph-mgr -c "$CONF" -i "$MGR_ID"
    fi
}

start_osd() {
    local osddata=$DIR/osd/ceph-$OSD_ID
    if [ ! -e "$osddata/cephdev-done" ]; then
        log "creating osd.$OSD_ID"
        rm -rf "$osddata"
        mkdir -p "$osddata"
        local uuid secret ids
        uuid=$(uuidgen)
        ceph-authtool --create-keyring "$osddata/keyring" --gen-key -n "osd.$OSD_ID" >/dev/null
        secret=$(ceph-authtool -p -n "osd.$OSD_ID" "$osddata/keyring")
        printf '{"cephx_secret": "%s"}\n' "$secret" >"$DIR/osd/new.json"
        # an earlier failed attempt may have left osd.0 registered: forget it.
        # Only mon commands here: `ceph osd purge` needs a mgr and hangs without one.
        ids=$(ceph_cmd osd ls)
        if printf '%s\n' "$ids" | grep -qx "$OSD_ID"; then
            ceph_cmd osd down "$OSD_ID" >/dev/null 2>&1 || true
            ceph_cmd osd crush remove "osd.$OSD_ID" >/dev/null 2>&1 || true
            ceph_cmd osd rm "$OSD_ID" >/dev/null 2>&1 || true
        fi
        ceph_cmd auth del "osd.$OSD_ID" >/dev/null 2>&1 || true
        ceph_cmd osd new "$uuid" "$OSD_ID" -i "$DIR/osd/new.json" >/dev/null
        rm -f "$DIR/osd/new.json"
        # mkfs prints harmless "_read_bdev_label failed ... No such file" lines: keep them in a log
        ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd-mkfs.log" 2>&1 ||
            { tail -20 "$DIR/log/osd-mkfs.log" >&2; die "ceph-osd --mkfs failed"; }
        touch "$osddata/cephdev-done"
    fi
    if live_pid "osd.$OSD_ID" >/dev/null; then
        log "osd.$OSD_ID already running"
    else
        log "starting osd.$OSD_ID"
        start_daemon "osd.$OSD_ID" ceph-osd -c "$CONF" -i "$OSD_ID"
    fi
}

osd_up() {
    local dump
    dump=$(ceph_cmd osd dump -f plain) || return 1
    printf '%s\n' "$dump" | grep -q "^osd\.$OSD_ID up "
}

rbd_probe() {
    local obj=cephdev-probe-$$
    timeout 20 rados -c "$CONF" -p rbd put "$obj" "$CONF" && timeout 20 rados -c "$CONF" -p rbd rm "$obj"
}

setup_pool() {
    local pools
    pools=$(ceph_cmd osd pool ls)
    if ! printf '%s\n' "$pools" | grep -qx rbd; then
        log "creating pool rbd"
        ceph_cmd osd pool create rbd 8 8 replicated
        timeout "$TIMEOUT" rbd -c "$CONF" pool init rbd
    fi
    wait_for "$TIMEOUT" "pool rbd to accept writes" rbd_probe
}

start_rgw() {
    command -v radosgw >/dev/null || die "radosgw not installed"
    mkdir -p "$DIR/rgw"
    if [ ! -s "$DIR/rgw/keyring" ]; then
        ceph_cmd auth get-or-create "$RGW_NAME" mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
            -o "$DIR/rgw/keyring"
    fi
    if live_pid "$RGW_NAME" >/dev/null; then
        log "$RGW_NAME already running"
    else
        port_busy "$RGW_PORT" && die "127.0.0.1:$RGW_PORT already in use (set CEPH_DEV_RGW_PORT)"
        log "starting radosgw ($RGW_NAME) on 127.0.0.1:$RGW_PORT"
        start_daemon "$RGW_NAME" radosgw -c "$CONF" -n "$RGW_NAME"
    fi
    wait_for "$TIMEOUT" "radosgw on 127.0.0.1:$RGW_PORT" port_busy "$RGW_PORT"
    if ! timeout 60 radosgw-admin -c "$CONF" user info --uid=dev >/dev/null 2>&1; then
        log "creating S3 user 'dev'"
        timeout 60 radosgw-admin -c "$CONF" user create --uid=dev --display-name=dev \
            --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
    fi
}

# ---------------------------------------------------------------- commands
cmd_start() {
    set_dir "$1" create
    shift
    local rgw=0 mgr=1 objectstore="" size_gb=""
    while [ $# -gt 0 ]; do
        case $1 in
        --rgw) rgw=1 ;;
        --no-mgr) mgr=0 ;;
        --memstore) objectstore=memstore ;;
        --osd-size-gb) size_gb=$2; shift ;;
        *) die "unknown option: $1" ;;
        esac
        shift
    done
    check_tools
    local t0=$SECONDS
    mkdir -p "$DIR"/{run,log,crash,mon,mgr,osd}
    [ -s "$DIR/fsid" ] || uuidgen >"$DIR/fsid"
    # the objectstore and size are fixed when the OSD is created; remember them
    if [ -e "$DIR/osd/ceph-$OSD_ID/cephdev-done" ] && [ -s "$DIR/osd/objectstore" ]; then
        objectstore=$(cat "$DIR/osd/objectstore")
        size_gb=$(cat "$DIR/osd/size-gb")
    fi
    objectstore=${objectstore:-bluestore}
    if [ -z "$size_gb" ]; then
        if [ "$objectstore" = memstore ]; then size_gb=2; else size_gb=10; fi
    fi
    echo "$objectstore" >"$DIR/osd/objectstore"
    echo "$size_gb" >"$DIR/osd/size-gb"
    write_conf "$objectstore" $((size_gb * 1024 * 1024 * 1024))

    start_mon
    if ((mgr)); then
        start_mgr
    else
        # without a mgr the mon raises MGR_DOWN (HEALTH_WARN) after ~2 minutes
        ceph_cmd health mute MGR_DOWN --sticky >/dev/null
    fi
    start_osd
    wait_for "$TIMEOUT" "osd.$OSD_ID up" osd_up
    setup_pool
    if ((rgw)); then start_rgw; fi
    log "cluster ready in $((SECONDS - t0))s - use: eval \"\$($0 env $DIR)\""
}

stop_names() { # SIGTERM the named daemons in parallel, wait up to 30s, then SIGKILL
    local name pid pids=() t0=$SECONDS
    for name in "$@"; do
        if pid=$(live_pid "$name"); then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$(pidfile "$name")"
    done
    for pid in "${pids[@]}"; do
        while [ -d "/proc/$pid" ] && ((SECONDS - t0 < 30)); do sleep 0.1; done
        if [ -d "/proc/$pid" ]; then
            log "pid $pid did not exit after 30s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

cmd_stop() {
    [ -d "${1:-}" ] || return 0 # nothing was started from a directory that does not exist
    set_dir "$1"
    # radosgw first and alone: on SIGTERM it still needs the OSD, and hangs (>30s)
    # if the OSD goes away at the same time. Then OSD+mgr, mon last.
    stop_names "$RGW_NAME"
    stop_names "osd.$OSD_ID" "mgr.$MGR_ID"
    stop_names "mon.$MON_ID"
}

cmd_status() {
    set_dir "$1"
    local name pid rc=0
    for name in "mon.$MON_ID" "mgr.$MGR_ID" "osd.$OSD_ID" "$RGW_NAME"; do
        if pid=$(live_pid "$name"); then
            printf '%-16s running  pid %-8s rss %s kB\n' "$name" "$pid" \
                "$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")"
        else
            printf '%-16s stopped\n' "$name"
        fi
    done
    if live_pid "mon.$MON_ID" >/dev/null; then
        ceph -c "$CONF" --connect-timeout 10 -s || rc=$?
    else
        rc=3
    fi
    return $rc
}

cmd_running() {
    set_dir "$1"
    local name names=("mon.$MON_ID" "mgr.$MGR_ID" "osd.$OSD_ID")
    if [ "${2:-}" = --rgw ]; then names+=("$RGW_NAME"); fi
    for name in "${names[@]}"; do live_pid "$name" >/dev/null || return 1; done
}

cmd_env() {
    set_dir "$1"
    cat <<EOF
# the conf names the client.admin keyring ([client] keyring=), so CEPH_CONF is enough
# for ceph/rbd/rados and for rados.Rados(conffile=os.environ["CEPH_CONF"]).
# Do not export CEPH_KEYRING: every Ceph daemon started from that shell would use it.
export CEPH_CONF=$CONF
export CEPH_DEV_KEYRING=$KEYRING
export CEPH_DEV_DIR=$DIR
EOF
    if [ -s "$DIR/rgw/keyring" ]; then
        cat <<EOF
export S3_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_DEFAULT_REGION=default
EOF
    fi
}

cmd_wipe() {
    [ -n "${1:-}" ] || usage
    [ -d "$1" ] || return 0
    set_dir "$1"
    [ -e "$DIR/fsid" ] || [ -z "$(ls -A "$DIR")" ] || die "$DIR does not look like a $PROG directory; not deleting"
    cmd_stop "$DIR"
    rm -rf "$DIR"
    log "removed $DIR"
}

missing_packages() {
    local p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

cmd_install() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then log "all packages installed"; return 0; fi
    log "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing
}

case ${1:-} in
start) shift; [ $# -ge 1 ] || usage; cmd_start "$@" ;;
stop) shift; [ $# -ge 1 ] || usage; cmd_stop "$1" ;;
status) shift; [ $# -ge 1 ] || usage; cmd_status "$1" ;;
running) shift; [ $# -ge 1 ] || usage; cmd_running "$@" ;;
env) shift; [ $# -ge 1 ] || usage; cmd_env "$1" ;;
wipe) shift; [ $# -ge 1 ] || usage; cmd_wipe "$1" ;;
install) cmd_install ;;
*) usage ;;
esac
