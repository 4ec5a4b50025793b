#!/usr/bin/env bash
# A throw-away single-node Ceph cluster for tests and benchmarks: one monitor and one OSD whose
# objects live in memory (memstore) or, with CEPH_OBJECTSTORE=bluestore, in a sparse file in DIR
# (an OSD restart keeps its data), no authentication, listening on 127.0.0.1 only, with a pool
# `rbd` of one replica. Everything (ceph.conf, data, logs, PID files) lives in DIR.
#
#   Scripts/ceph-test-cluster.sh start DIR     prints the ceph.conf path; DIR/pids lists the daemons
#   Scripts/ceph-test-cluster.sh stop DIR      kills the daemons listed in DIR/pids (only those)
#   Scripts/ceph-test-cluster.sh stop-osd DIR  stops the OSD only, in order (SIGTERM)
#   Scripts/ceph-test-cluster.sh kill-osd DIR  kills the OSD only (SIGKILL; fault tests)
#   Scripts/ceph-test-cluster.sh start-osd DIR starts it again
#
# Environment: CEPH_OBJECTSTORE (memstore, the default, or bluestore); CEPH_MEMSTORE_BYTES (default
# 2G) bounds a memstore OSD's memory for objects, CEPH_BLUESTORE_BYTES (default 4G) a bluestore
# OSD's file (sparse: it takes only what is written);
# CEPH_START_TIMEOUT (default 60) bounds how long start waits for the pool to accept I/O.
# Needs Debian's ceph-mon, ceph-osd and ceph-common. The monitor's port is picked free at start, so
# two clusters (two test runs) do not clash; the OSD takes free ports from Ceph's 6800-7300 range.
set -euo pipefail

usage() { echo "usage: $0 start|stop|stop-osd|kill-osd|start-osd DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
command=$1
dir=$2

for tool in ceph-mon ceph-osd ceph monmaptool rados; do
    command -v "$tool" >/dev/null || {
        echo "ceph-test-cluster: $tool is not installed (Debian packages ceph-mon ceph-osd ceph-common)" >&2
        exit 1
    }
done

# Descriptors inherited from the caller (beyond 0-2) are closed: the daemons and the watcher outlive
# this script and would keep them open, and a caller that waits for them to close (Foundation's
# Process does, to learn that its child ended) would wait as long as the cluster runs.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done

conf="$dir/ceph.conf"
timeout_seconds=${CEPH_START_TIMEOUT:-60}

# Stops process $1 with signal $2 and waits (at most 10 s) until it is gone; SIGKILL after that.
stop_pid() {
    local pid=$1 signal=$2
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        # A zombie has ended; whether its parent (init, or a subreaper) reaps it soon is not ours to wait for.
        [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Stops the daemons named $1 ("osd.0") or all ("all") among those DIR/pids lists with signal $2
# (default KILL), and forgets them.
stop_daemons() {
    local which=$1 signal=${2:-KILL} name pid
    [ -f "$dir/pids" ] || return 0
    : >"$dir/pids.keep"
    while read -r name pid; do
        if [ "$which" = all ] || [ "$which" = "$name" ]; then
            stop_pid "$pid" "$signal"
        else
            echo "$name $pid" >>"$dir/pids.keep"
        fi
    done <"$dir/pids"
    mv "$dir/pids.keep" "$dir/pids"
    [ -s "$dir/pids" ] || rm -f "$dir/pids"
}

# Starts daemon NAME (the rest is its command line) in the foreground of a background job, so that
# it stays in the caller's process group (a CI stage that kills its group kills the cluster too),
# and records "NAME PID" in DIR/pids.
start_daemon() {
    local name=$1
    shift
    "$@" -f >>"$dir/log/$name.out" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

# Waits (bounded) until the pool accepts a write: the monitor, the OSD and the pool's placement
# groups are all up.
wait_for_pool() {
    if ! timeout "$timeout_seconds" rados -c "$conf" -p rbd put ceph-test-cluster-probe /dev/null; then
        echo "ceph-test-cluster: the pool did not become writable within $timeout_seconds s; logs in $dir/log" >&2
        exit 1
    fi
    rados -c "$conf" -p rbd rm ceph-test-cluster-probe
}

# With CEPH_CLUSTER_OWNER set to a PID, stops the cluster and removes DIR when that process ends (a
# test process that crashed or was killed before it could stop the cluster itself).
watch_owner() {
    local owner=${CEPH_CLUSTER_OWNER:-}
    [ -n "$owner" ] || return 0
    (
        while kill -0 "$owner" 2>/dev/null && [ -f "$dir/pids" ]; do sleep 1; done
        "$0" stop "$dir" && rm -rf "$dir"
    ) </dev/null >/dev/null 2>&1 &
}

case $command in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    conf="$dir/ceph.conf"
    if [ -s "$dir/pids" ]; then
        echo "ceph-test-cluster: $dir/pids exists: stop that cluster first" >&2
        exit 1
    fi
    mkdir -p "$dir/mon.a" "$dir/osd.0" "$dir/run" "$dir/log"
    : >"$dir/pids"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fsid=$(cat /proc/sys/kernel/random/uuid)
    case ${CEPH_OBJECTSTORE:-memstore} in
    memstore)
        objectstore_settings="osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-2G}"
        ;;
    bluestore)
        # One file holds data and metadata (no separate DB or WAL device); small caches, since a
        # test cluster holds little; no fsck at each mount (it would slow every restart).
        objectstore_settings="osd objectstore = bluestore
bluestore block path = $dir/osd.0.block
bluestore block create = true
bluestore block size = ${CEPH_BLUESTORE_BYTES:-4G}
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 128M
osd memory target = 1G"
        ;;
    *)
        echo "ceph-test-cluster: CEPH_OBJECTSTORE must be memstore or bluestore" >&2
        exit 2
        ;;
    esac
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
$objectstore_settings
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/\$name
osd data = $dir/\$name
# A test cluster answers quickly or not at all: fail clients fast.
client mount timeout = 15
rados mon op timeout = 15
EOF
    # A start that fails half-way stops what it started.
    trap '[ $? -eq 0 ] || stop_daemons all' EXIT
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mon.mkfs.log" 2>&1
    start_daemon mon.a ceph-mon -c "$conf" -i a
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    timeout "$timeout_seconds" ceph -c "$conf" osd new "$osd_uuid" >/dev/null
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd.mkfs.log" 2>&1
    start_daemon osd.0 ceph-osd -c "$conf" -i 0
    timeout "$timeout_seconds" ceph -c "$conf" osd pool create rbd 8 8 >/dev/null 2>&1
    timeout "$timeout_seconds" ceph -c "$conf" osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1
    timeout "$timeout_seconds" ceph -c "$conf" osd pool application enable rbd rbd >/dev/null 2>&1
    wait_for_pool
    watch_owner
    echo "$conf"
    ;;
stop)
    # SIGKILL: the cluster is thrown away, and a daemon's orderly shutdown can take seconds.
    stop_daemons all KILL
    ;;
stop-osd)
    # An orderly stop (which can take seconds).
    stop_daemons osd.0 TERM
    ;;
kill-osd)
    # A crash: requests in flight to the OSD are never answered.
    stop_daemons osd.0 KILL
    ;;
start-osd)
    # A bluestore OSD finds its objects in its file; a memstore OSD starts empty here (its objects
    # did not come back after a restart when this was tried), so fault tests that restart the OSD
    # use bluestore.
    start_daemon osd.0 ceph-osd -c "$conf" -i 0
    wait_for_pool
    ;;
*) usage ;;
esac
