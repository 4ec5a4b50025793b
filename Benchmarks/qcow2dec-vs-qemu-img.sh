#!/usr/bin/env bash
# qcow2dec against qemu-img: the time to turn one qcow2 image into a raw file, by
#
#   qemu     qemu-img convert -f qcow2 -O raw IMAGE OUT
#   ours     nbd-serve -U - --filter=qcow2dec file IMAGE --run 'nbdcopy "$uri" OUT'
#
# (nbd-serve's start and stop included), alternately, --reps times each, on the same image in
# /dev/shm, output to /dev/shm. A third column, the control, copies the raw disk the image was made
# from with `nbd-serve file RAW --run 'nbdcopy "$uri" OUT'` (no filter): the difference between it
# and the second is what decoding costs, the rest is the server and nbdcopy. A fourth column times
# nbdcopy alone against the same qcow2dec export served by one nbd-serve started before the first
# rep (the export already running, as a server serves it; its start and the `--run` shell, 15-20 ms
# and 2 ms here, are then not in the time). nbdkit 1.32 has no qcow2dec filter, so qemu-img, which
# reads qcow2 natively, is the reference (issue #22 asks for >= 1.0x). Prints each run's seconds,
# the medians, and the ratios qemu-img / nbd-serve of the medians (higher is better for nbd-serve).
#
#   Benchmarks/qcow2dec-vs-qemu-img.sh [--reps N] [--size MiB] [--compressed] [--no-build] [--serve PATH]
#
# --serve times that nbd-serve binary (say, another branch's release build, copied aside) instead of
# this checkout's .build-release one, and builds nothing.
#
# The image: SIZE MiB (default 1024) of which the first three quarters are random data and the
# rest zeroes, converted once to qcow2 with qemu-img's defaults (64 KiB clusters, compat 1.1);
# --compressed makes it with `qemu-img convert -c` (zlib) instead, from data that compresses
# (base64 text).
set -euo pipefail
cd "$(dirname "$0")/.."

reps=5
size=1024
compressed=""
build=yes
serve_override=""
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --compressed) compressed=yes; shift ;;
        --no-build) build=""; shift ;;
        --serve) serve_override=$2; build=""; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

for tool in qemu-img nbdcopy; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: qemu-utils, libnbd-bin)" >&2; exit 1; }
done
# The release build side-by-side.sh uses (its own scratch path, so a debug .build is never taken).
if [ -n "$build" ]; then swift build -c release --product nbd-serve --scratch-path .build-release >&2; fi
if [ -n "$serve_override" ]; then
    serve=$serve_override
else
    serve="$(swift build -c release --scratch-path .build-release --show-bin-path)/nbd-serve"
fi

work=$(mktemp -d /dev/shm/qcow2dec-bench.XXXXXX)
running_pid=""
cleanup() {
    if [ -n "$running_pid" ]; then
        kill "$running_pid" 2>/dev/null || true
        wait "$running_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
data=$((size * 3 / 4))
if [ -n "$compressed" ]; then
    head -c $((data * 3 / 4))M /dev/urandom | base64 -w 0 | head -c ${data}M >"$work/raw.img"
    truncate -s ${size}M "$work/raw.img"
    qemu-img convert -c -f raw -O qcow2 "$work/raw.img" "$work/image.qcow2"
else
    head -c ${data}M /dev/urandom >"$work/raw.img"
    truncate -s ${size}M "$work/raw.img"
    qemu-img convert -f raw -O qcow2 "$work/raw.img" "$work/image.qcow2"
fi
echo "image: $(du -m "$work/image.qcow2" | cut -f1) MiB qcow2 of a $size MiB disk${compressed:+ (zlib-compressed)}" >&2

seconds() {
    local start end
    start=$(date +%s.%N)
    # A failed run must not become a fast time: say "failed", which the loop below stops on.
    if ! "$@" >/dev/null; then echo failed; return; fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The running export of the fourth column, stopped by its PID.
"$serve" -f -U "$work/running.sock" --filter=qcow2dec file "$work/image.qcow2" &
running_pid=$!
for _ in $(seq 1 200); do [ -S "$work/running.sock" ] && break; sleep 0.05; done
[ -S "$work/running.sock" ] || { echo "qcow2dec-bench: the running export did not start" >&2; exit 1; }

qemu_times=()
ours_times=()
plain_times=()
running_times=()
for rep in $(seq 1 "$reps"); do
    rm -f "$work/out.raw"
    qemu_times+=("$(seconds qemu-img convert -f qcow2 -O raw "$work/image.qcow2" "$work/out.raw")")
    rm -f "$work/out.raw"
    ours_times+=("$(seconds "$serve" -U - --filter=qcow2dec file "$work/image.qcow2" --run "nbdcopy \"\$uri\" $work/out.raw")")
    rm -f "$work/out.raw"
    plain_times+=("$(seconds "$serve" -U - file "$work/raw.img" --run "nbdcopy \"\$uri\" $work/out.raw")")
    rm -f "$work/out.raw"
    running_times+=("$(seconds nbdcopy "nbd+unix:///?socket=$work/running.sock" "$work/out.raw")")
    echo "rep $rep: qemu-img ${qemu_times[-1]} s, qcow2dec+nbdcopy ${ours_times[-1]} s, file+nbdcopy ${plain_times[-1]} s, nbdcopy of the running export ${running_times[-1]} s" >&2
    case " ${qemu_times[-1]} ${ours_times[-1]} ${plain_times[-1]} ${running_times[-1]} " in
        *" failed "*) echo "qcow2dec-bench: a run failed (its error is above); no result" >&2; exit 1 ;;
    esac
done
qemu=$(printf '%s\n' "${qemu_times[@]}" | median)
ours=$(printf '%s\n' "${ours_times[@]}" | median)
plain=$(printf '%s\n' "${plain_times[@]}" | median)
running=$(printf '%s\n' "${running_times[@]}" | median)
printf 'median seconds: qemu-img convert %.3f, nbd-serve qcow2dec + nbdcopy %.3f (control, raw file without the filter: %.3f); ratio (qemu-img / qcow2dec) %.2fx\n' \
    "$qemu" "$ours" "$plain" "$(echo "$qemu / $ours" | bc -l)"
printf 'nbdcopy of the running qcow2dec export: median %.3f s; ratio (qemu-img / it) %.2fx\n' \
    "$running" "$(echo "$qemu / $running" | bc -l)"
