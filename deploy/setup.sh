#!/usr/bin/env bash
# setup.sh - prepare a Debian 12 machine (root, no systemd) for edgeback development.
#
# Idempotent; safe on a clean clone and on an already prepared tree:
#   1. apt-get install the Debian packages that are missing (apt-get update only then)
#   2. .venv from CPython 3.11 (the minor version Debian's python3-rados/rbd are built
#      for), `pip install -e '.[dev]'` (skipped when pyproject.toml did not change)
#   3. Debian's rados/rbd extension modules made importable in .venv through a .pth
#      file naming .venv/ceph-pybind/, which holds symlinks to just those two files
#      (a .pth naming dist-packages itself would leak every Debian Python package)
#   4. .venv-catalogdb from CPython 3.13 with deploy/catalog-db/requirements.txt
#
# Overrides: EDGEBACK_PYTHON311, EDGEBACK_PYTHON313 (interpreters to use).

set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PROG=${0##*/}
PACKAGES="ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd radosgw uuid-runtime rabbitmq-server openssl"
DIST=/usr/lib/python3/dist-packages
VENV=$REPO/.venv
CATALOG_VENV=$REPO/.venv-catalogdb
PTH_NAME=edgeback-ceph-pybind.pth

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_packages() {
    local p missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing="$missing $p"
    done
    if [ -z "$missing" ]; then
        log "Debian packages: all present"
        return 0
    fi
    log "Debian packages: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing
}

ext_suffix() { "$1" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'; }

# a python3.11 whose extension suffix matches Debian's rados module (pyenv builds first)
find_python311() {
    local py
    for py in ${EDGEBACK_PYTHON311:-} /root/.pyenv/versions/3.11.*/bin/python3.11 \
        "$(command -v python3.11 || true)" /usr/bin/python3.11; do
        [ -n "$py" ] && [ -x "$py" ] || continue
        if [ -e "$DIST/rados$(ext_suffix "$py")" ]; then
            echo "$py"
            return 0
        fi
    done
    die "no python3.11 whose EXT_SUFFIX matches $DIST/rados*.so (set EDGEBACK_PYTHON311)"
}

find_python313() {
    local py
    for py in ${EDGEBACK_PYTHON313:-} /root/.pyenv/versions/3.13.*/bin/python3.13 \
        "$(command -v python3.13 || true)"; do
        [ -n "$py" ] && [ -x "$py" ] && { echo "$py"; return 0; }
    done
    die "no python3.13 found (mongoeco needs >= 3.13; set EDGEBACK_PYTHON313)"
}

# venv_ok VENV MINOR: the venv exists, its interpreter runs and has that minor version
venv_ok() {
    [ -x "$1/bin/python" ] &&
        "$1/bin/python" -c "import sys; sys.exit(sys.version_info[:2] != (3, $2))" 2>/dev/null
}

make_venv() { # make_venv VENV MINOR PYTHON
    if venv_ok "$1" "$2"; then
        log "${1##*/}: present ($("$1/bin/python" -V))"
        return 0
    fi
    log "${1##*/}: creating from $3"
    rm -rf "$1"
    "$3" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip
}

# pip_install VENV STAMP_SOURCE PIP_ARGS...: reinstall only when STAMP_SOURCE changed
pip_install() {
    local venv=$1 source=$2 stamp sum
    shift 2
    stamp=$venv/.edgeback-setup-stamp
    sum=$(sha256sum "$source" | cut -d' ' -f1)
    if [ -s "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
        log "${venv##*/}: dependencies up to date"
        return 0
    fi
    log "${venv##*/}: pip install $*"
    (cd "$REPO" && "$venv/bin/python" -m pip install -q "$@")
    echo "$sum" >"$stamp"
}

bridge_ceph_bindings() {
    local py=$VENV/bin/python site suffix m src link
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    suffix=$(ext_suffix "$py")
    mkdir -p "$VENV/ceph-pybind"
    for m in rados rbd; do
        src=$DIST/$m$suffix
        [ -e "$src" ] || die "$src missing (python3-$m not installed?)"
        ln -sfn "$src" "$VENV/ceph-pybind/$m$suffix"
        # older setups linked the modules straight into site-packages: drop those links
        link=$site/$m$suffix
        if [ -L "$link" ]; then rm -f "$link"; fi
    done
    echo "$VENV/ceph-pybind" >"$site/$PTH_NAME"
    "$py" -c '
import sys
import rados, rbd
for m in (rados, rbd):
    assert "/ceph-pybind/" in m.__file__, m.__file__
assert not any(p.rstrip("/").endswith("dist-packages") for p in sys.path), sys.path
' || die "import rados, rbd failed in $VENV"
    log ".venv: rados and rbd importable through $PTH_NAME"
}

main() {
    local t0=$SECONDS
    [ "$(id -u)" = 0 ] || die "run as root (apt-get)"
    install_packages
    make_venv "$VENV" 11 "$(find_python311)"
    pip_install "$VENV" "$REPO/pyproject.toml" -e "$REPO[dev]"
    # an editable install compiles nothing, and PYTHONDONTWRITEBYTECODE (set on these
    # machines) stops Python writing .pyc at import: every CLI run would compile our
    # modules again (~25 ms of a 0.2 s start). Stale .pyc files are re-checked by mtime.
    "$VENV/bin/python" -m compileall -q "$REPO/libs" "$REPO/services" >/dev/null
    bridge_ceph_bindings
    make_venv "$CATALOG_VENV" 13 "$(find_python313)"
    pip_install "$CATALOG_VENV" "$REPO/deploy/catalog-db/requirements.txt" \
        -r "$REPO/deploy/catalog-db/requirements.txt"
    "$CATALOG_VENV/bin/python" -c 'import mongoeco.wire' || die "mongoeco not importable"
    log "done in $((SECONDS - t0))s"
}

main "$@"
