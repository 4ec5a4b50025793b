#!/usr/bin/env bash
# One server, one workload, one line: for quick A/B checks and profiles that side-by-side.sh is
# too coarse for (two builds of nbd-serve, an environment variable, a perf count).
#
#   Benchmarks/probe.sh [--runtime S] [--region SIZE] [--perf-client] [--perf-server] [--upstream]
#                       WORKLOAD -- COMMAND...
#
# COMMAND starts the server in the foreground on a Unix socket; the word SOCKET in it is replaced by
# a socket path in a private temporary folder, for example
#
#   Benchmarks/probe.sh randread4k -- .build-release/release/nbd-serve -f -U SOCKET memory 1G
#   Benchmarks/probe.sh randread4k -- nbdkit -f -U SOCKET memory 1G
#
# The export is filled once with 1 MiB writes, then the workload runs (fio's nbd engine, or
# nbdcopy to null: repeated for the runtime). Printed: throughput, server CPU per request
# (utime + stime from /proc/PID/stat over the requests completed) and the client's CPU %.
# --perf-client / --perf-server add per-request counts of context switches and socket/poll/futex
# syscalls of the client (fio) or of the server, from `perf stat` tracepoints (needs root or
# perf_event_paranoid <= 1; slows both a little).
#
# --upstream first starts `nbdkit -f -U UPSOCKET memory 1G` and replaces the word UPSOCKET in the
# command with its socket (the nbdproxy setup: ... -- nbd-serve -f -U SOCKET nbd socket=UPSOCKET).
#
# Workloads: randread4k randwrite4k (iodepth 16, 1 connection), seqread1m seqwrite1m, randwrite4k4c
# randread4k4c (4 jobs = 4 connections), randwrite4k4cfl (the same with a flush after every write),
# nbdcopy1c, nbdcopy4c (256 KiB requests). Only the servers this script starts are stopped, by PID.
set -euo pipefail

runtime=4
region=1g
perf_client=0
perf_server=0
upstream=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runtime) runtime="$2"; shift 2 ;;
        --region) region="$2"; shift 2 ;;
        --perf-client) perf_client=1; shift ;;
        --perf-server) perf_server=1; shift ;;
        --upstream) upstream=1; shift ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -ge 3 ] && [ "$2" = "--" ] || { echo "usage: probe.sh [options] WORKLOAD -- COMMAND... (see --help)" >&2; exit 2; }
workload="$1"
shift 2

# shellcheck source=workloads.sh
source "$(dirname "${BASH_SOURCE[0]}")/workloads.sh"
client=$(workload_fio_args "$workload") || { echo "probe: unknown workload $workload" >&2; exit 2; }

work=$(mktemp -d /tmp/nbd-probe.XXXXXX)
sock="$work/socket"
server_pid=""
upstream_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$upstream_pid" ] && kill -0 "$upstream_pid" 2>/dev/null; then
        kill "$upstream_pid" 2>/dev/null || true
        wait "$upstream_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

upsock="$work/upstream"
if [ "$upstream" = 1 ]; then
    nbdkit -f -U "$upsock" memory 1G >"$work/upstream.log" 2>&1 &
    upstream_pid=$!
    for _ in $(seq 200); do [ -S "$upsock" ] && break; sleep 0.05; done
    [ -S "$upsock" ] || { echo "probe: the upstream nbdkit did not start" >&2; exit 1; }
fi
command=()
for word in "$@"; do word="${word//UPSOCKET/$upsock}"; command+=("${word//SOCKET/$sock}"); done
"${command[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "probe: the server did not create $sock:" >&2; cat "$work/server.log" >&2; exit 1; }

uri="nbd+unix:///?socket=$sock"
fio --ioengine=nbd "--uri=$uri" --name=fill --rw=write --bs=1m --iodepth=8 --size=1g >/dev/null

events=task-clock,context-switches,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_poll,syscalls:sys_enter_futex
ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
before=$(ticks)
start=$(date +%s.%N)
if [ "$perf_server" = 1 ]; then
    perf stat -e "$events" -x, -o "$work/server.perf" -p "$server_pid" &
    perf_pid=$!
fi
perf_prefix=()
[ "$perf_client" = 1 ] && perf_prefix=(perf stat -e "$events" -x, --append -o "$work/client.perf" --)
if [ -z "$client" ]; then
    read -r copies _ <<<"$(copy_for "$runtime" "$workload" "$uri" "${perf_prefix[@]}")"
    echo "{\"copies\": $copies}" >"$work/client.json"
else
    # shellcheck disable=SC2086
    "${perf_prefix[@]}" fio --ioengine=nbd "--uri=$uri" --name=probe --group_reporting --output-format=json \
        --time_based "--runtime=$runtime" "--size=$region" $client >"$work/client.json"
fi
end=$(date +%s.%N)
after=$(ticks)
if [ "$perf_server" = 1 ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
fi

python3 - "$work" "$workload" "$before" "$after" "$start" "$end" "$(getconf CLK_TCK)" "${command[0]##*/}" <<'EOF'
import json, os, sys
work, workload = sys.argv[1], sys.argv[2]
before, after, start, end, hz = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
server = sys.argv[8]
text = open(os.path.join(work, "client.json")).read()
data = json.loads(text[text.index("{"):])
if "copies" in data:
    mib = data["copies"] * 1024
    requests = mib * 4
    line = f"{mib / (end - start):8.0f} MiB/s"
    client_cpu = ""
else:
    job = data["jobs"][0]
    requests = job["read"]["total_ios"] + job["write"]["total_ios"] + job.get("sync", {}).get("total_ios", 0)
    if workload.endswith("1m"):
        line = f"{(job['read']['bw'] + job['write']['bw']) / 1024:8.0f} MiB/s"
    else:
        line = f"{job['read']['iops'] + job['write']['iops']:8.0f} IOPS "
    client_cpu = f"  client CPU {job['usr_cpu'] + job['sys_cpu']:3.0f} %"
cpu_us = (after - before) / hz * 1e6 / max(requests, 1)
print(f"{server:<12} {workload:<16} {line}  server {cpu_us:7.2f} µs CPU/req{client_cpu}")
for side in ("client", "server"):
    path = os.path.join(work, side + ".perf")
    if not os.path.exists(path):
        continue
    # Summed per event: with nbdcopy the client's counts are appended once per copy.
    totals = {}
    for row in open(path):
        fields = row.strip().split(",")
        if len(fields) < 3 or not fields[0].replace(".", "").isdigit():
            continue
        totals[fields[2]] = totals.get(fields[2], 0.0) + float(fields[0])
    counts = []
    for event, value in totals.items():
        name = event.replace("syscalls:sys_enter_", "")
        if event == "task-clock":
            counts.append(f"{value * 1000 / requests:.2f} µs CPU")
        else:
            counts.append(f"{value / requests:.3f} {name}")
    print(f"    {side} per request: " + ", ".join(counts))
EOF
