#!/usr/bin/env bash
# Vendored from the Holdfast shared tools
# (../shared/tools/ceph-rgw/start-rgw.sh, sha256 5315931d65d22870), so a clean clone
# can start Ceph RGW for the S3 tests (tests/s3server.py) and make bench-s3.
# Two local changes: `tcp_nodelay=1` on the beast frontend (without it every response with
# a body, GET or LIST, waited ~40 ms for the client's delayed ACK under Nagle: 47 ms per
# small GET or LIST against 4-8 ms with it, measured on the 2-core test machine); and no
# root check: everything lives in DIR and on ports above 1024, and the cluster starts and
# stops as an unprivileged user too (checked as `nobody`), so `make test` needs no sudo.
# start-rgw.sh [DIR] -- throwaway single-node Ceph cluster (1 mon, 1 OSD, 1 radosgw)
# on 127.0.0.1 for S3 tests, from Debian 12's ceph packages
# (radosgw ceph-mon ceph-osd, 16.2.x "Pacific"). No mgr, no cephx, no systemd.
#
#   DIR        argument, else $S3_DIR, else /tmp/holdfast-rgw   (must be new or ours)
#   S3_PORT    RGW port on 127.0.0.1 (default 7480)
#   MON_PORT   monitor port on 127.0.0.1 (default: a free port picked at start)
#   S3_ACCESS_KEY / S3_SECRET_KEY   keys of the S3 user (defaults below)
#   S3_START_TIMEOUT  seconds to wait for each step (default 120)
#   S3_OSD_STORE  memstore (default: data in OSD RAM, ~2.2x the bytes stored; start ~2.5 s)
#                 or bluestore (data in sparse file DIR/osd.0.block; start ~6 s)
#   S3_STORE_BYTES  OSD capacity (default 4 GiB memstore / 10 GiB bluestore)
#
# On success prints one line:  S3_ENDPOINT=... S3_ACCESS_KEY=... S3_SECRET_KEY=...
# and writes the same as shell exports to DIR/env. Everything else goes to stderr.
# Running it again on a healthy cluster just prints the line again; a dead or
# half-started cluster in DIR is stopped and rebuilt. Stop with stop-rgw.sh DIR.
set -euo pipefail

DIR=${1:-${S3_DIR:-/tmp/holdfast-rgw}}
S3_PORT=${S3_PORT:-7480}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-s3testaccesskey0001}
S3_SECRET_KEY=${S3_SECRET_KEY:-s3testsecretkey00000000000000000000000001}
S3_USER=${S3_USER:-s3test}
TIMEOUT=${S3_START_TIMEOUT:-120}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MARK=.holdfast-rgw-cluster

log() { echo "start-rgw: $*" >&2; }
STARTED=0
die() {
  log "ERROR: $*"
  if [ "$STARTED" = 1 ]; then
    tail -n 15 "$DIR"/log/*.log "$DIR"/log/*.stderr >&2 2>/dev/null
    log "stopping what was started; logs kept in $DIR/log"
    S3_KEEP_DIR=1 "$HERE/stop-rgw.sh" "$DIR" >&2 || true
  fi
  exit 1
}

for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool ceph curl; do
  command -v "$b" >/dev/null || die "missing $b (apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd curl)"
done
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
case "$DIR" in /|*[[:space:]]*) die "bad DIR '$DIR' (no /, no whitespace)" ;; esac
ENDPOINT="http://127.0.0.1:$S3_PORT"

print_env() {
  printf 'export S3_ENDPOINT=%s\nexport S3_ACCESS_KEY=%s\nexport S3_SECRET_KEY=%s\nexport CEPH_CONF=%s\n' \
    "$ENDPOINT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$DIR/ceph.conf" > "$DIR/env"
  echo "S3_ENDPOINT=$ENDPOINT S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY"
}

alive() {  # pidfile -> true if that pid runs a ceph daemon using our conf
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF -- "$DIR/ceph.conf"
}

# ---- idempotence -----------------------------------------------------------
if [ -e "$DIR" ]; then
  if [ -f "$DIR/$MARK" ]; then
    if [ -f "$DIR/env" ] && alive "$DIR/run/mon.a.pid" && alive "$DIR/run/osd.0.pid" \
       && alive "$DIR/run/client.rgw.pid" && grep -q "127.0.0.1:$S3_PORT$" "$DIR/env" \
       && curl -fsS -o /dev/null --max-time 5 "$ENDPOINT/"; then
      log "cluster in $DIR already running"
      # shellcheck disable=SC1091
      . "$DIR/env"; echo "S3_ENDPOINT=$S3_ENDPOINT S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY"
      exit 0
    fi
    log "stale/partial cluster in $DIR: stopping and rebuilding"
    "$HERE/stop-rgw.sh" "$DIR" >&2
  elif [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists, is not empty and was not made by this script"
  fi
fi

if curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; then
  die "something already listens on 127.0.0.1:$S3_PORT"
fi

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MON_PORT=${MON_PORT:-$(free_port)}

mkdir -p "$DIR"/{run,log,mon.a,osd.0,rgw}
touch "$DIR/$MARK"
STARTED=1
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
CONF="$DIR/ceph.conf"
export CEPH_CONF="$CONF"
case "${S3_OSD_STORE:-memstore}" in
  memstore)  # objects live in the OSD's RAM (RSS ~2.2x the stored bytes)
    OSD_STORE_CONF="osd objectstore = memstore
memstore device bytes = ${S3_STORE_BYTES:-4294967296}" ;;
  bluestore)  # objects in a sparse file DIR/osd.0.block; RAM bounded by osd memory target
    OSD_STORE_CONF="osd objectstore = bluestore
bluestore block path = $DIR/osd.0.block
bluestore block create = true
bluestore block size = ${S3_STORE_BYTES:-10737418240}
bluestore block db path =
bluestore block wal path =
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore fsck on umount = false
osd memory target = 939524096
bdev enable discard = false" ;;
  *) die "S3_OSD_STORE must be memstore or bluestore" ;;
esac

cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# radosgw defaults to ms_mon_client_mode=secure + auth_client_required=cephx;
# neither works with auth none, so force plain crc mode for everyone.
ms mon client mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms cluster mode = crc
ms service mode = crc
ms mon service mode = crc
paxos propose interval = 0.1
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
rados osd op timeout = 60
rados mon op timeout = 60
client mount timeout = 60

[mon]
mon data = $DIR/mon.\$id
mon cluster log to file = true
mon data avail warn = 1
mon data avail crit = 0

[osd]
osd data = $DIR/osd.\$id
$OSD_STORE_CONF
osd crush update on start = true
osd crush initial weight = 1

[client.rgw]
auth client required = none
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw thread pool size = 64
rgw enable usage log = false
EOF

# ---- monitor ----------------------------------------------------------------
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" 2>>"$DIR/log/mon.a.stderr" \
  || die "mon mkfs failed"
ceph-mon -c "$CONF" -i a 2>>"$DIR/log/mon.a.stderr" || die "mon start failed"

c() { timeout "$TIMEOUT" ceph -c "$CONF" --connect-timeout 30 "$@"; }

deadline=$((SECONDS + TIMEOUT))
until c mon stat >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || die "monitor did not come up"
  sleep 0.2
done

# ---- OSD ------------------------------------------------------------------
OSD_ID=$(c osd new "$OSD_UUID") || die "ceph osd new failed"
[ "$OSD_ID" = 0 ] || die "unexpected osd id $OSD_ID"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >/dev/null 2>&1 || die "osd mkfs failed"
ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.0.stderr" || die "osd start failed"
deadline=$((SECONDS + TIMEOUT))
until [ "$(c osd dump -f json 2>/dev/null | python3 -c 'import json,sys; print(sum(o["up"] for o in json.load(sys.stdin)["osds"]))' 2>/dev/null)" = 1 ]; do
  [ $SECONDS -lt $deadline ] || die "osd did not come up"
  sleep 0.2
done

# ---- RGW user (also creates the default realm/zone and the rgw pools) -------
timeout "$TIMEOUT" radosgw-admin -c "$CONF" user create --uid="$S3_USER" --display-name="S3 test user" \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null 2>"$DIR/log/user-create.err" \
  || die "radosgw-admin user create failed: $(tail -3 "$DIR/log/user-create.err")"

# ---- radosgw -------------------------------------------------------------------
radosgw -c "$CONF" -n client.rgw 2>>"$DIR/log/client.rgw.stderr" || die "radosgw start failed"
deadline=$((SECONDS + TIMEOUT))
until curl -fs -o /dev/null --max-time 2 "$ENDPOINT/"; do
  [ $SECONDS -lt $deadline ] || die "radosgw did not answer on $ENDPOINT"
  if [ -f "$DIR/run/client.rgw.pid" ] && ! alive "$DIR/run/client.rgw.pid"; then die "radosgw exited"; fi
  sleep 0.2
done

print_env
