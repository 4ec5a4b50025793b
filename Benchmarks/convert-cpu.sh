#!/usr/bin/env bash
# Where the CPU of KubeVirt CDI's copy goes: `qemu-img convert -O raw` of a 1 GiB image that nginx
# serves, through nbd-serve's and nbdkit's curl backends (CDI's stack: readahead + retry + curl),
# alternating. For each copy it prints the wall time and the CPU (user + system) that the server,
# nginx's one worker and qemu-img spent, so that their sum can be set against the two cores.
#
#   Benchmarks/convert-cpu.sh [REPS] [-- EXTRA CURL PARAMETERS FOR nbd-serve]
#
# nginx is started on 127.0.0.1 with a configuration of its own (Benchmarks/nginx.sh, as
# side-by-side.sh does) and stopped by PID; the image and the copies are in /dev/shm. The environment variable SERVE names the
# nbd-serve binary (default .build-release/release/nbd-serve, as side-by-side.sh builds it).
set -euo pipefail
reps=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
serve=${SERVE:-$root/.build-release/release/nbd-serve}
work=$(mktemp -d /tmp/convert-cpu.XXXXXX)
image=/dev/shm/convert-cpu-disk.img
server_pid=""
# shellcheck source=nginx.sh
source "$(dirname "${BASH_SOURCE[0]}")/nginx.sh"
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    stop_nginx
    rm -rf "$work" /dev/shm/convert-cpu-out.img
}
trap cleanup EXIT
[ -f "$image" ] || head -c 1G /dev/urandom >"$image"
chmod 644 "$image"
start_nginx "$work/nginx" "$image"
worker=$(pgrep -P "$nginx_pid")
ticks=$(getconf CLK_TCK)
# cpu PID: utime + stime of a process, in clock ticks.
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
url="http://127.0.0.1:$nginx_port/disk.img"
printf '%-4s %-9s %8s %10s %10s %10s %10s\n' rep server wall_s server_s nginx_s qemu-img_s sum_s
for rep in $(seq 1 "$reps"); do
    for server in nbd-serve nbdkit; do
        sock="$work/socket"
        rm -f "$sock"
        if [ "$server" = nbd-serve ]; then
            "$serve" -f -U "$sock" -r --filter=readahead --filter=retry curl url="$url" retry-exponential=no "${extra[@]}" &
        else
            nbdkit -f -U "$sock" -r --filter=readahead --filter=retry curl url="$url" retry-exponential=no 2>/dev/null &
        fi
        server_pid=$!
        for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
        n0=$(cpu "$worker"); s0=$(cpu "$server_pid")
        start=$(date +%s.%N)
        # qemu-img's CPU from its own rusage (bash's `times` for the children is coarse).
        q=$( { /usr/bin/time -f '%U %S' qemu-img convert -O raw "nbd+unix:///?socket=$sock" /dev/shm/convert-cpu-out.img; } 2>&1 | tail -1)
        end=$(date +%s.%N)
        n1=$(cpu "$worker"); s1=$(cpu "$server_pid")
        kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
        rm -f /dev/shm/convert-cpu-out.img
        python3 - "$rep" "$server" "$start" "$end" "$((s1 - s0))" "$((n1 - n0))" "$q" "$ticks" <<'PY'
import sys
rep, server, start, end, s, n, q, ticks = sys.argv[1:]
t = float(ticks); u, k = (float(x) for x in q.split())
sv, ng, qi = int(s) / t, int(n) / t, u + k
print(f"{rep:<4} {server:<9} {float(end) - float(start):8.3f} {sv:10.2f} {ng:10.2f} {qi:10.2f} {sv + ng + qi:10.2f}")
PY
    done
done
