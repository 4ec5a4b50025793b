#!/usr/bin/env bash
# Soak test: a release nbd-serve serving a file through multi-conn and stats to 4 fio jobs (one
# connection each, random read/write with crc32c verification) for the given minutes, sampling
# the server's RSS and open descriptors every 10 s.
#
#   Scripts/soak.sh [minutes]          default 10
#   SOAK_SCRATCH=.build-x Scripts/soak.sh 1
#
# Fails (exit 1) on any verify error or fio failure, RSS growth of 5 % or more between the end of
# the first minute and the end, a descriptor count that changes while the load is steady or does
# not return to its idle value afterwards, or a server that does not exit 0 on SIGTERM.
# Unix sockets only; the image lives in /dev/shm (or $TMPDIR); only processes this script started
# are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
scratch=${SOAK_SCRATCH:-.build-release}
interval=10
runtime=$((minutes * 60))
# The baseline is taken at the end of the first minute (or half-way through shorter runs).
baseline_at=$((runtime < 120 ? runtime / 2 : 60))

for tool in fio swift; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is not installed" >&2; exit 1; }
done

echo "== building nbd-serve (release, $scratch)"
swift build -c release --scratch-path "$scratch" --product nbd-serve >/dev/null
server_bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/nbd-serve"

base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/nbd-soak.XXXXXX")
server_pid=""
fio_pid=""
cleanup() {
    [ -n "$fio_pid" ] && kill "$fio_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    [ -n "$fio_pid" ] && wait "$fio_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

image="$work/disk.img"
socket="$work/nbd.sock"
truncate -s 256M "$image"

"$server_bin" -U "$socket" --filter=multi-conn --filter=stats file "$image" statsfile="$work/stats.txt" \
    2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    [ -S "$socket" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "soak: nbd-serve did not start" >&2; exit 1; }
    sleep 0.1
done
[ -S "$socket" ] || { echo "soak: nbd-serve did not listen" >&2; exit 1; }

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
fds() { find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
idle_fds=$(fds)

echo "== soaking for $minutes min: nbd-serve pid $server_pid, 4 fio jobs, image $image"
# Each job owns a 64 MiB region, so verification never sees another job's writes.
(cd "$work" && exec fio --name=soak --ioengine=nbd --uri="nbd+unix:///?socket=$socket" \
    --rw=randrw --rwmixread=50 --bs=4k --iodepth=16 --numjobs=4 --size=64m --offset_increment=64m \
    --time_based --runtime="$runtime" --verify=crc32c --verify_fatal=1 --verify_backlog=4096 \
    --do_verify=1 --verify_state_save=0 --group_reporting --output-format=json \
    >"$work/fio.json" 2>"$work/fio.err") &
fio_pid=$!

samples="$work/samples.txt"
start=$(date +%s)
baseline_rss=""
baseline_fds=""
printf '%6s %10s %5s\n' "t(s)" "rss(KiB)" "fds" | tee "$samples"
while kill -0 "$fio_pid" 2>/dev/null; do
    sleep "$interval"
    kill -0 "$fio_pid" 2>/dev/null || break
    kill -0 "$server_pid" 2>/dev/null || { echo "soak: nbd-serve died" >&2; break; }
    now=$(($(date +%s) - start))
    r=$(rss)
    f=$(fds)
    printf '%6d %10d %5d\n' "$now" "$r" "$f" | tee -a "$samples"
    # Only samples while all 4 jobs surely run count (fio winds down after its runtime).
    [ "$now" -le $((runtime - 3)) ] || continue
    if [ -z "$baseline_rss" ] && [ "$now" -ge "$baseline_at" ]; then
        baseline_rss=$r
        baseline_fds=$f
    fi
    last_rss=$r
    last_fds=$f
    steady_fds_changed=${steady_fds_changed:-0}
    if [ -n "$baseline_fds" ] && [ "$f" -ne "$baseline_fds" ]; then steady_fds_changed=1; fi
done
fio_status=0
wait "$fio_pid" || fio_status=$?
fio_pid=""

# The connections close once fio is done; give the server a moment to release them.
end_fds=$(fds)
for _ in $(seq 50); do
    [ "$end_fds" -eq "$idle_fds" ] && break
    sleep 0.1
    end_fds=$(fds)
done

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""

failures=()
[ "$fio_status" -eq 0 ] || failures+=("fio exited with status $fio_status")
if grep -qiE 'verify: bad|bad magic|crc32c.*(wanted|mismatch)' "$work/fio.err" "$work/fio.json" 2>/dev/null; then
    failures+=("fio reported verify errors")
fi
summary=$(/usr/bin/python3 - "$work/fio.json" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
data = json.loads(text[text.index("{"):])
reads = sum(j["read"]["total_ios"] for j in data["jobs"])
writes = sum(j["write"]["total_ios"] for j in data["jobs"])
errors = sum(j["error"] for j in data["jobs"])
print(reads, writes, errors)
EOF
) || summary="0 0 1"
read -r reads writes job_errors <<<"$summary"
[ "$job_errors" -eq 0 ] || failures+=("fio jobs reported errors")
[ "$server_status" -eq 0 ] || failures+=("nbd-serve exited with status $server_status on SIGTERM")
if [ -z "$baseline_rss" ] || [ -z "${last_rss:-}" ]; then
    failures+=("no samples were taken (run at least 1 minute)")
else
    growth=$(awk -v a="$baseline_rss" -v b="$last_rss" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
    awk -v g="$growth" 'BEGIN { exit !(g < 5) }' || failures+=("RSS grew $growth % (limit 5 %)")
    [ "${steady_fds_changed:-0}" -eq 0 ] || failures+=("the descriptor count changed under steady load")
fi
[ "$end_fds" -eq "$idle_fds" ] || failures+=("descriptors after the run: $end_fds, idle: $idle_fds")

echo "== soak summary ($minutes min)"
echo "fio: $reads reads, $writes writes of 4 KiB; written blocks re-read and checked (crc32c, verify_backlog); status $fio_status, job errors $job_errors"
echo "RSS: ${baseline_rss:-?} KiB at ${baseline_at}s, ${last_rss:-?} KiB at the end (growth ${growth:-?} %)"
echo "fds: $idle_fds idle, ${baseline_fds:-?} under load at ${baseline_at}s, ${last_fds:-?} at the end, $end_fds after"
echo "nbd-serve exit status on SIGTERM: $server_status"
sed -n 1,2p "$work/stats.txt" 2>/dev/null | sed 's/^/stats: /' || true
if [ ${#failures[@]} -gt 0 ]; then
    printf 'soak FAILED: %s\n' "${failures[@]}"
    sed -n 1,20p "$work/fio.err" >&2 || true
    exit 1
fi
echo "soak PASSED"
