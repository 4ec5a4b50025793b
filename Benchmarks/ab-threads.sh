#!/usr/bin/env bash
# A/B of curl servers (two builds of nbd-serve, nbdkit) by CPU per request, context switches per
# request and per-thread CPU, alternating the servers in every rep, in front of one nginx that this
# script starts (as side-by-side.sh's curl setups do). For comparing thread models: side-by-side.sh
# reports throughput and process CPU; this adds where the CPU went and how often threads slept.
#
#   Benchmarks/ab-threads.sh WORKLOAD REPS RUNTIME NAME=COMMAND...
#
# WORKLOAD is randread4k or seqread1m (fio's nbd engine, iodepth 16, RUNTIME seconds) or convert
# (one `qemu-img convert -O raw` of the whole export to /dev/shm; RUNTIME is ignored, requests are
# counted in 256 KiB units). In COMMAND, SOCKET is replaced by the Unix socket path and URL by the
# image's URL, for example
#
#   Benchmarks/ab-threads.sh randread4k 3 4 \
#       "old=/tmp/nbd-serve-old -f -U SOCKET -r curl url=URL" \
#       "new=.build-release/release/nbd-serve -f -U SOCKET -r curl url=URL" \
#       "nbdkit=nbdkit -f -U SOCKET -r curl url=URL"
#
# Per-thread figures come from /proc/PID/task at the start and the end of the run, grouped by
# thread name, so threads that start and end within the run (a connection's) appear only in the
# process total. Only the processes this script starts are stopped, by PID.
set -euo pipefail

[ $# -ge 4 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
workload="$1" reps="$2" runtime="$3"
shift 3

work=$(mktemp -d /tmp/nbd-ab-threads.XXXXXX)
chmod 755 "$work"
image=/dev/shm/nbd-ab-threads.$$.img
sock="$work/sock"
server_pid=""
# shellcheck source=nginx.sh
source "$(dirname "${BASH_SOURCE[0]}")/nginx.sh"
cleanup() {
    [ -z "$server_pid" ] || { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
    stop_nginx
    rm -rf "$work" "$image" "/dev/shm/nbd-ab-threads.$$.out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

head -c 1G /dev/urandom >"$image"
chmod 644 "$image"
start_nginx "$work/nginx" "$image"
url="http://127.0.0.1:$nginx_port/disk.img"

# threads PID: {name: [cpu ticks, context switches]} of the process's threads, as JSON.
threads() {
    python3 - "$1" <<'EOF'
import json, os, sys
pid, out = sys.argv[1], {}
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        status = open(f"/proc/{pid}/task/{tid}/status").read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")].rstrip("0123456789 ")
    fields = stat[stat.rindex(")") + 2:].split()
    switches = sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
    entry = out.setdefault(name, [0, 0])
    entry[0] += int(fields[11]) + int(fields[12])
    entry[1] += switches
print(json.dumps(out))
EOF
}

fio_requests() {
    python3 -c "
import json, sys
text = open('$work/fio.json').read()
print(json.loads(text[text.index('{'):])['jobs'][0]['read']['total_ios'])"
}

for rep in $(seq 1 "$reps"); do
    for variant in "$@"; do
        name=${variant%%=*}
        command=${variant#*=}
        command=${command//SOCKET/$sock}
        command=${command//URL/$url}
        rm -f "$sock"
        # shellcheck disable=SC2086
        $command >"$work/server-$name.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
        threads "$server_pid" >"$work/before.json"
        cpu_before=$(awk '{ print $14 + $15 }' "/proc/$server_pid/stat")
        t0=$(date +%s.%N)
        case "$workload" in
            randread4k | seqread1m)
                bs=4k rw=randread
                [ "$workload" = seqread1m ] && bs=1m rw=read
                fio --ioengine=nbd "--uri=nbd+unix:///?socket=$sock" --name=job --output-format=json \
                    --rw=$rw --bs=$bs --iodepth=16 --time_based "--runtime=$runtime" --size=1g >"$work/fio.json"
                requests=$(fio_requests)
                ;;
            convert)
                qemu-img convert -O raw "nbd+unix:///?socket=$sock" "/dev/shm/nbd-ab-threads.$$.out"
                rm -f "/dev/shm/nbd-ab-threads.$$.out"
                requests=4096
                ;;
            *) echo "ab-threads: unknown workload $workload" >&2; exit 2 ;;
        esac
        t1=$(date +%s.%N)
        cpu_after=$(awk '{ print $14 + $15 }' "/proc/$server_pid/stat")
        threads "$server_pid" >"$work/after.json"
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        python3 - "$work/before.json" "$work/after.json" <<EOF
import json, sys
before, after = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
requests, seconds = $requests, $t1 - $t0
zero = [0, 0]
switches = sum(after[n][1] - before.get(n, zero)[1] for n in after) / requests
per_thread = " ".join(
    f"{n}:{(after[n][0] - before.get(n, zero)[0]) * 1e4 / requests:.0f}us/{(after[n][1] - before.get(n, zero)[1]) / requests:.2f}cs"
    for n in after if after[n] != before.get(n, zero))
print(f"rep $rep $name: {requests / seconds:8.0f} req/s  cpu/req {($cpu_after - $cpu_before) * 1e4 / requests:6.1f} us  "
      f"cs/req {switches:.2f}  load $(cut -d' ' -f1 /proc/loadavg)  threads: {per_thread}")
EOF
    done
done
