#!/usr/bin/env bash
# Vendored, unchanged below this header, from the Holdfast shared tools
# (../shared/tools/ceph-rgw/stop-rgw.sh, sha256 922b97cce0a5d46b), so a clean clone
# can start Ceph RGW for the S3 tests (tests/s3server.py) and make bench-s3.
# stop-rgw.sh [DIR] -- stop the cluster made by start-rgw.sh in DIR (argument,
# else $S3_DIR, else /tmp/holdfast-rgw) and remove DIR. Only the PIDs recorded in
# DIR/run/*.pid whose command line names DIR/ceph.conf are signalled. Safe to run
# twice, or on a directory that does not exist. Set S3_KEEP_DIR=1 to keep DIR (logs).
set -uo pipefail

DIR=${1:-${S3_DIR:-/tmp/holdfast-rgw}}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
MARK=.holdfast-rgw-cluster
log() { echo "stop-rgw: $*" >&2; }

[ -e "$DIR" ] || { log "$DIR does not exist; nothing to do"; exit 0; }
[ -f "$DIR/$MARK" ] || { log "ERROR: $DIR was not made by start-rgw.sh (no $MARK); not touching it"; exit 1; }

ours() {  # pid -> true if it is a live process whose command line names our conf
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$DIR/ceph.conf"
}

stop_one() {  # name signal-first wait-seconds
  local f="$DIR/run/$1.pid" p i
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null)
  if ours "$p"; then
    kill "-$2" "$p" 2>/dev/null
    for ((i = 0; i < $3 * 10; i++)); do ours "$p" || break; sleep 0.1; done
    if ours "$p"; then log "$1 ($p) still alive, SIGKILL"; kill -KILL "$p" 2>/dev/null; fi
    for ((i = 0; i < 50; i++)); do ours "$p" || break; sleep 0.1; done
    log "stopped $1 (pid $p)"
  fi
  rm -f "$f"
}

# RGW first (KILL: a graceful radosgw shutdown takes ~5 s), then the OSD (KILL:
# memstore would otherwise dump all objects to disk on shutdown, pointless for a
# throwaway cluster), then the monitor (TERM, exits in ~0.3 s).
stop_one client.rgw KILL 0
stop_one osd.0 KILL 0
stop_one mon.a TERM 10

if [ "${S3_KEEP_DIR:-0}" = 1 ]; then
  log "kept $DIR"
else
  rm -rf -- "$DIR" && log "removed $DIR"
fi
