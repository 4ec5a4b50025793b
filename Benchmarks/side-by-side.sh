#!/usr/bin/env bash
# Side-by-side: nbd-serve (release build of this repository) against nbdkit, same setups, same
# clients, over a Unix socket in a private temporary directory.
#
#   Benchmarks/side-by-side.sh [--quick] [--reps N] [--runtime SECONDS] [--setups LIST]
#                              [--workloads LIST] [--no-build] [--no-rss] [--out FILE]
#                              [--serve PATH] [--baseline-serve PATH]
#
# For every rep, every setup and every workload the two servers run ALTERNATELY (nbd-serve, nbdkit,
# nbd-serve, nbdkit, ...), each freshly started and prefilled, so slow drift on a shared machine
# hits both. For every workload it prints the median over the reps of each server, the ratio
# nbd-serve / nbdkit of those medians (higher is better for nbd-serve), the ratio of each rep's
# back-to-back pair and their median (less exposed to a machine that slows down for a minute and
# hits one server's median rep but not the other's), and the server CPU per request
# (utime + stime of the server process from /proc/PID/stat, before and after the workload, divided
# by the requests the client completed).
#
# Setups (--setups, comma separated; default all):
#   memory     memory 1G
#   mc         --filter=multi-conn memory 1G
#   mcstats    --filter=multi-conn --filter=stats memory 1G statsfile=/dev/null
#   file       file on a 1 GiB image in /dev/shm (tmpfs)
#   blocksize  --filter=blocksize memory 1G maxdata=64K   (not in the default list; its rows are
#              seqread1m and seqwrite1m: --setups blocksize --workloads seqread1m,seqwrite1m)
#   log        --filter=log memory 1G logfile=FILE, FILE in the private temporary directory (not in
#              the default list; its row is randread4k: --setups log --workloads randread4k)
#   cache      --filter=cache file (the same image) cache-on-read=true: the prefill warms the cache
#              (writeback), so reads are warm-cache reads; the cache file is in TMPDIR (/var/tmp)
#   cow        --filter=cow file (the same image): writes and reads back through the overlay
#   racache    --filter=readahead --filter=cache file (the same image)
#   raslow     --filter=readahead --filter=cache --filter=delay file (the same image) delay-read=2ms:
#              readahead and cache over a slow layer (each read below waits 2 ms), cold: no prefill;
#              its row is seqread1m (not in the default list)
#   nbdproxy   nbd socket=UP: the nbd backend/plugin in front of `nbdkit -U UP memory 1G` (a fresh
#              upstream per server start; the CPU column is the front server's alone)
#   curl       -r curl url=http://127.0.0.1:PORT/IMAGE: the curl backend/plugin in front of an nginx
#              (Debian's nginx, started by this script with its own configuration on 127.0.0.1 and a
#              free port) serving a 1 GiB random image from /dev/shm (not in the default list; its
#              rows are randread4k, seqread1m and convert1g; nothing is prefilled: the export is
#              read-only)
#   curlcdi    KubeVirt CDI's stack: -r --filter=readahead --filter=retry curl url=... retry-exponential=no
#              (not in the default list; its rows are convert1g, randread4k and seqread1m)
#   xz         -r --filter=xz file IMAGE.xz: a 1 GiB image (128 MiB of base64 text, then zeros) compressed
#              once by `xz -T0 -0 --block-size=1MiB` (1024 blocks) into /dev/shm; not in the default
#              list; its row is randread4k (each read of an uncached block decodes 1 MiB); read-only,
#              nothing is prefilled
#   tar        --filter=tar file IMAGE.tar tar-entry=disk.img: a tar archive in /dev/shm holding a
#              small file and the 1 GiB image, written by GNU tar once; not in the default list; its
#              row is randread4k (prefilled through the filter)
#   ext2       --filter=ext2 file IMAGE.ext4 ext2file=/disk.img: a 1.2 GiB ext4 image in /dev/shm made once
#              by `mkfs.ext4 -d` around a 1 GiB file of random data (so every block is allocated); not
#              in the default list; its row is randread4k (prefilled through the filter)
#   luks       --filter=luks file IMAGE.luks passphrase=+FILE: a LUKSv1 image in /dev/shm with 1 GiB
#              of payload, formatted once by `cryptsetup luksFormat --type luks1` (aes-xts-plain64,
#              512-bit key, sha256; 1000 PBKDF2 iterations so that opening takes no time); not in the
#              default list; its rows are randread4k, seqread1m and seqwrite1m (prefilled through the
#              filter). Needs cryptsetup (Debian package cryptsetup-bin)
#   tls        memory 1G with --tls=require and X.509 certificates made by certtool (not in the
#              default list: pass --setups tls); clients use nbds+unix:// and find the CA in
#              $HOME/.pki/libnbd (a private HOME), since fio's nbd engine refuses tls-certificates=
#   pattern    pattern 1G: read-only generated data (nothing prefilled); its row is randread4k (not
#              in the default list: --setups pattern,null --workloads randread4k). nbdkit's zero
#              plugin is always 0 bytes long, so it has no random-read row.
#   null       null 1G: reads zeroes, discards writes (nothing prefilled); its row is randread4k
#   rbd        rbd rbd/bench on a throw-away Ceph cluster (Scripts/ceph-test-cluster.sh, memstore,
#              started once for the run): nbd-serve's rbd backend (shared handle, the default)
#              against qemu-nbd's rbd driver (`qemu-nbd -t --shared=8 -f raw --cache=writeback
#              rbd:rbd/bench:conf=...`, Debian package qemu-block-extra) in the column that says
#              nbdkit, which has no rbd plugin. Not in the default list: --setups rbd,rbdpc,rbdcache
#   rbdpc      the same with handles=per-connection (qemu-nbd unchanged)
#   rbdcache   --filter=cache in front of the same rbd backend (cache-on-read=true), against plain
#              qemu-nbd; its row is hotread4k64m
# Workloads (--workloads; default all), fio's nbd engine, time based:
#   randread4k       4 KiB random read, iodepth 16, 1 connection
#   randwrite4k      4 KiB random write, iodepth 16, 1 connection
#   seqread1m        1 MiB sequential read, iodepth 16, 1 connection
#   seqwrite1m       1 MiB sequential write, iodepth 16, 1 connection
#   randwrite4k4c    4 KiB random write, iodepth 16, 4 fio jobs (4 connections)
#   randread4k4c     4 KiB random read, iodepth 16, 4 fio jobs (4 connections; not in the default list)
#   randwrite4k4cfl  the same with a flush after every write (fio fsync=1)
#   randread4k4c     4 KiB random read, iodepth 16, 4 fio jobs (not in the default list; an nbdproxy row)
#   hotread4k64m     4 KiB random read of the first 64 MiB, iodepth 16, 1 connection (not in the
#                    default list; the rbdcache row)
#   nbdcopy4c        nbdcopy of the whole export to null:, 4 connections (repeated for the runtime)
#   nbdcopy1c        the same with 1 connection
#   convert1g        qemu-img convert -O raw of the whole 1 GiB export to a file in /dev/shm, as CDI's
#                    importer does (repeated for the runtime; MiB/s)
# A/B of two builds of nbd-serve: --serve PATH runs that nbd-serve binary instead of building this
# repository's (implies --no-build), and --baseline-serve PATH runs a second nbd-serve binary in
# nbdkit's column, labelled "baseline" (the nbdproxy setup's upstream stays nbdkit for both). With a
# baseline, even reps run the baseline first (A B in odd reps, B A in even reps), so that neither
# build always follows the other; the ratios are nbd-serve / baseline. For example, two commits'
# release builds in their own worktrees:
#
#   Benchmarks/side-by-side.sh --serve NEW/.build-release/release/nbd-serve \
#       --baseline-serve OLD/.build-release/release/nbd-serve --setups memory --reps 5 --no-rss
#
# Then, unless --no-rss: the resident memory (VmRSS) of each server's memory backend after writing
# 256 MiB into a 1 TiB export, sequentially from offset 0 and as 1 MiB blocks spread over the export.
#
# Defaults: 5 s per workload, 3 reps. --quick: 2 s, 1 rep. Only Unix sockets are used; only the
# processes this script starts are stopped, by PID; everything is removed on exit.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=workloads.sh
source "$here/workloads.sh"
root="$(cd "$here/.." && pwd)"

reps=3
runtime=5
setups="memory,mc,mcstats,file,nbdproxy"
workloads="randread4k,randwrite4k,seqread1m,seqwrite1m,randwrite4k4c,randwrite4k4cfl,nbdcopy4c,nbdcopy1c"
build=1
rss=1
out=""
serve_path=""
baseline_serve=""

usage() { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) reps=1; runtime=2 ;;
        --reps) reps="$2"; shift ;;
        --runtime) runtime="$2"; shift ;;
        --setups) setups="$2"; shift ;;
        --workloads) workloads="$2"; shift ;;
        --no-build) build=0 ;;
        --no-rss) rss=0 ;;
        --out) out="$2"; shift ;;
        --serve) serve_path="$2"; build=0; shift ;;
        --baseline-serve) baseline_serve="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "side-by-side: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

for tool in fio nbdkit nbdcopy python3; do
    command -v "$tool" >/dev/null || { echo "side-by-side: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d /tmp/nbd-side-by-side.XXXXXX)"
sock="$work/nbd.sock"
image="/dev/shm/nbd-side-by-side.$$.img"
xz_image="/dev/shm/nbd-side-by-side.$$.img.xz"
tar_image="/dev/shm/nbd-side-by-side.$$.tar"
ext2_image="/dev/shm/nbd-side-by-side.$$.ext4"
luks_image="/dev/shm/nbd-side-by-side.$$.luks"
upsock="$work/upstream.sock"
upstream_pid=""
results="$work/results.tsv"
server_pid=""

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    rm -f "$sock"
}

# The nbdproxy setup's upstream: nbdkit memory 1G on $upsock.
start_upstream() {
    rm -f "$upsock"
    nbdkit -f -U "$upsock" memory 1G >"$work/upstream.log" 2>&1 &
    upstream_pid=$!
    for _ in $(seq 1 200); do
        [ -S "$upsock" ] && return 0
        sleep 0.05
    done
    echo "side-by-side: the upstream nbdkit did not start" >&2
    exit 1
}

stop_upstream() {
    if [ -n "$upstream_pid" ]; then
        kill "$upstream_pid" 2>/dev/null || true
        wait "$upstream_pid" 2>/dev/null || true
        upstream_pid=""
    fi
    rm -f "$upsock"
}

# The rbd setups' cluster, started once for the run, and its 1 GiB image rbd/bench.
ceph_dir=""
start_ceph() {
    ceph_dir="$work/ceph"
    "$root/Scripts/ceph-test-cluster.sh" start "$ceph_dir" >/dev/null
    rbd -c "$ceph_dir/ceph.conf" create --size 1G rbd/bench
}

# The curl setups' web server (Benchmarks/nginx.sh): nginx on 127.0.0.1:$nginx_port serving
# $image, configured in $work/nginx, stopped by its PID.
# shellcheck source=nginx.sh
source "$(dirname "${BASH_SOURCE[0]}")/nginx.sh"

cleanup() {
    stop_server
    stop_upstream
    [ -z "$ceph_dir" ] || "$root/Scripts/ceph-test-cluster.sh" stop "$ceph_dir"
    stop_nginx
    rm -f "$image" "$xz_image" "$tar_image" "$ext2_image" "$luks_image" /dev/shm/nbd-side-by-side.$$.out
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$build" = 1 ]; then
    echo "== building nbd-serve (release, scratch path .build-release)" >&2
    (cd "$root" && swift build -c release --product nbd-serve --scratch-path .build-release >&2)
fi
if [ -n "$serve_path" ]; then
    nbd_serve="$(cd "$(dirname "$serve_path")" && pwd)/$(basename "$serve_path")"
else
    nbd_serve="$(cd "$root" && swift build -c release --scratch-path .build-release --show-bin-path)/nbd-serve"
fi
[ -x "$nbd_serve" ] || { echo "side-by-side: $nbd_serve not found (run without --no-build)" >&2; exit 1; }
# The second column: nbdkit, or with --baseline-serve another nbd-serve binary.
other=nbdkit
if [ -n "$baseline_serve" ]; then
    [ -x "$baseline_serve" ] || { echo "side-by-side: $baseline_serve is not an executable" >&2; exit 1; }
    baseline_serve="$(cd "$(dirname "$baseline_serve")" && pwd)/$(basename "$baseline_serve")"
    other=baseline
fi

# The arguments after the listen options, per setup; the same for both servers.
setup_args() {
    case "$1" in
        memory) echo "memory 1G" ;;
        mc) echo "--filter=multi-conn memory 1G" ;;
        mcstats) echo "--filter=multi-conn --filter=stats memory 1G statsfile=/dev/null" ;;
        file) echo "file $image" ;;
        blocksize) echo "--filter=blocksize memory 1G maxdata=64K" ;;
        log) echo "--filter=log memory 1G logfile=$work/requests.log" ;;
        cache) echo "--filter=cache file $image cache-on-read=true" ;;
        cow) echo "--filter=cow file $image" ;;
        racache) echo "--filter=readahead --filter=cache file $image" ;;
        raslow) echo "--filter=readahead --filter=cache --filter=delay file $image delay-read=2ms" ;;
        nbdproxy) echo "nbd socket=$upsock" ;;
        pattern) echo "pattern 1G" ;;
        null) echo "null 1G" ;;
        tls) echo "--tls=require --tls-certificates=$work/pki memory 1G" ;;
        rbd) echo "rbd rbd/bench conf=$ceph_dir/ceph.conf" ;;
        rbdpc) echo "rbd rbd/bench conf=$ceph_dir/ceph.conf handles=per-connection" ;;
        rbdcache) echo "--filter=cache rbd rbd/bench conf=$ceph_dir/ceph.conf cache-on-read=true" ;;
        curl) echo "-r curl url=http://127.0.0.1:$nginx_port/disk.img" ;;
        curlcdi) echo "-r --filter=readahead --filter=retry curl url=http://127.0.0.1:$nginx_port/disk.img retry-exponential=no" ;;
        xz) echo "-r --filter=xz file $xz_image" ;;
        tar) echo "--filter=tar file $tar_image tar-entry=disk.img" ;;
        ext2) echo "--filter=ext2 file $ext2_image ext2file=/disk.img" ;;
        luks) echo "--filter=luks file $luks_image passphrase=+$work/luks.pw" ;;
        *) echo "side-by-side: unknown setup $1" >&2; exit 2 ;;
    esac
}

# start_server SERVER ARGS...: starts nbd-serve or nbdkit in the foreground on $sock.
start_server() {
    local which="$1"; shift
    rm -f "$sock"
    case "$which:${setup:-}" in
        nbd-serve:*) "$nbd_serve" -f -U "$sock" "$@" >"$work/server.log" 2>&1 & ;;
        baseline:*) "$baseline_serve" -f -U "$sock" "$@" >"$work/server.log" 2>&1 & ;;
        # nbdkit has no rbd plugin: the rbd setups compare with qemu-nbd's rbd driver.
        nbdkit:rbd*)
            qemu-nbd -t --shared=8 -f raw --cache=writeback -k "$sock" \
                "rbd:rbd/bench:conf=$ceph_dir/ceph.conf" >"$work/server.log" 2>&1 &
            ;;
        nbdkit:*) nbdkit -f -U "$sock" "$@" >"$work/server.log" 2>&1 & ;;
    esac
    server_pid=$!
    for _ in $(seq 1 200); do
        [ -S "$sock" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "side-by-side: $which $* did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

uri() {
    if [ "${setup:-}" = tls ]; then echo "nbds+unix:///?socket=$sock"; else echo "nbd+unix:///?socket=$sock"; fi
}

# The tls setup's certificates: a CA and a server certificate in $work/pki, and the CA where libnbd
# looks by default in a private HOME that the clients get.
make_pki() {
    local pki="$work/pki"
    mkdir -p "$pki" "$work/home/.pki/libnbd"
    certtool --generate-privkey --outfile "$pki/ca-key.pem" 2>/dev/null
    printf 'cn = bench CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$pki/ca.info"
    certtool --generate-self-signed --load-privkey "$pki/ca-key.pem" --template "$pki/ca.info" \
        --outfile "$pki/ca-cert.pem" 2>/dev/null
    certtool --generate-privkey --outfile "$pki/server-key.pem" 2>/dev/null
    printf 'cn = localhost\ndns_name = localhost\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
        >"$pki/server.info"
    certtool --generate-certificate --load-ca-certificate "$pki/ca-cert.pem" --load-ca-privkey "$pki/ca-key.pem" \
        --load-privkey "$pki/server-key.pem" --template "$pki/server.info" --outfile "$pki/server-cert.pem" 2>/dev/null
    cp "$pki/ca-cert.pem" "$work/home/.pki/libnbd/ca-cert.pem"
}

fio_common() {
    echo --ioengine=nbd "--uri=$(uri)" --name=job --group_reporting --output-format=json
}

# Fills the whole export once after each start, so reads and nbdcopy move real data (not holes).
prefill() {
    fio $(fio_common) --rw=write --bs=1m --iodepth=8 --size=1g >/dev/null
}

# run_workload NAME: runs one workload against the server on $sock, prints
# "value unit requests elapsed_seconds".
run_workload() {
    local name="$1" json="$work/fio.json"
    local timed=(--time_based "--runtime=$runtime" --size=1g)
    local args copies elapsed
    args=$(workload_fio_args "$name") || { echo "side-by-side: unknown workload $name" >&2; exit 2; }
    if [ "$name" = convert1g ]; then
        read -r copies elapsed <<<"$(convert_for "$runtime" "$(uri)" /dev/shm/nbd-side-by-side.$$.out)"
        python3 -c "
e = $elapsed; mib = $copies * 1024
print(f'{mib / e:.1f} MiB/s {mib * 4} {e:.3f}')"
        return
    fi
    if [ -z "$args" ]; then
        read -r copies elapsed <<<"$(copy_for "$runtime" "$name" "$(uri)")"
        python3 -c "
e = $elapsed; mib = $copies * 1024
print(f'{mib / e:.1f} MiB/s {mib * 4} {e:.3f}')"
        return
    fi
    # shellcheck disable=SC2086
    fio $(fio_common) "${timed[@]}" $args >"$json"
    python3 - "$json" "$name" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
# fio's nbd engine prints "fio: connected to NBD server" on standard output before the JSON.
job = json.loads(text[text.index("{"):])["jobs"][0]
name = sys.argv[2]
reads, writes = job["read"], job["write"]
syncs = job.get("sync", {}).get("total_ios", 0)
requests = reads["total_ios"] + writes["total_ios"] + syncs
elapsed = job["job_runtime"] / 1000.0
if name.endswith("1m"):
    value, unit = (reads["bw"] + writes["bw"]) / 1024.0, "MiB/s"
else:
    value, unit = reads["iops"] + writes["iops"], "IOPS"
print(f"{value:.1f} {unit} {requests} {elapsed:.3f}")
EOF
}

printf 'setup\tworkload\tserver\trep\tvalue\tunit\trequests\tseconds\tcpu_seconds\n' >"$results"
IFS=, read -r -a setup_list <<<"$setups"
IFS=, read -r -a workload_list <<<"$workloads"

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== nbd-serve: $nbd_serve; $(nbdkit --version | head -1); fio $(fio --version)" >&2
[ -z "$baseline_serve" ] || echo "== baseline (in nbdkit's column): $baseline_serve" >&2
echo "== $reps rep(s), ${runtime} s per workload" >&2

real_home="$HOME"
case ",$setups," in *,tls,*) make_pki ;; esac
case ",$setups," in *,rbd*) start_ceph ;; esac
case ",$setups," in
    *,curl,* | *,curlcdi,*)
        head -c 1G /dev/urandom >"$image"
        start_nginx "$work/nginx" "$image"
        ;;
esac
case ",$setups," in
    *,xz,*)
        echo "== compressing the xz setup's image (xz -T0 -0 --block-size=1MiB)" >&2
        { head -c 96M /dev/urandom | base64 -w 0 | head -c 128M; head -c 896M /dev/zero; } |
            xz -T0 -0 --block-size=1MiB >"$xz_image"
        ;;
esac
case ",$setups," in
    *,tar,*)
        mkdir -p "$work/tar"
        echo "a small file before the image" >"$work/tar/first.txt"
        head -c 1G /dev/zero >"$work/tar/disk.img"
        tar -C "$work/tar" -cf "$tar_image" first.txt disk.img
        rm -f "$work/tar/disk.img"
        ;;
esac
case ",$setups," in
    *,ext2,*)
        echo "== making the ext2 setup's image (mkfs.ext4 -d around 1 GiB of random data)" >&2
        mkdir -p /dev/shm/nbd-side-by-side.$$.ext2
        head -c 1G /dev/urandom >/dev/shm/nbd-side-by-side.$$.ext2/disk.img
        mkfs.ext4 -q -F -d /dev/shm/nbd-side-by-side.$$.ext2 "$ext2_image" 1200M
        rm -rf /dev/shm/nbd-side-by-side.$$.ext2
        ;;
esac

case ",$setups," in
    *,luks,*)
        printf 'benchmark' >"$work/luks.pw"
        # 1 GiB of payload after cryptsetup's 2 MiB of header and key material.
        truncate -s 1026M "$luks_image"
        cryptsetup luksFormat --type luks1 -q --key-file "$work/luks.pw" --pbkdf-force-iterations 1000 \
            --cipher aes-xts-plain64 --key-size 512 --hash sha256 "$luks_image"
        ;;
esac

for rep in $(seq 1 "$reps"); do
    for setup in "${setup_list[@]}"; do
        if [ "$setup" = tls ]; then export HOME="$work/home"; else export HOME="$real_home"; fi
        # shellcheck disable=SC2207
        args=($(setup_args "$setup"))
        case "$setup" in
            file | cache | cow | racache | raslow)
                rm -f "$image"
                truncate -s 1G "$image"
                ;;
        esac
        for workload in "${workload_list[@]}"; do
            order="nbd-serve $other"
            [ "$other" = baseline ] && [ $((rep % 2)) = 0 ] && order="baseline nbd-serve"
            for server in $order; do
                [ "$setup" = nbdproxy ] && start_upstream
                start_server "$server" "${args[@]}"
                # raslow reads a sparse image through the slow layer: a prefill through the cache
                # would leave every block warm and measure the cache, not the readahead. The curl
                # and xz setups are read-only and their image is already random; pattern is
                # read-only and null keeps nothing: there is nothing to prefill.
                case "$setup" in raslow | curl | curlcdi | xz | pattern | null) ;; *) prefill ;; esac
                before=$(cpu_ticks)
                t0=$(date +%s.%N)
                read -r value unit requests _ < <(run_workload "$workload")
                t1=$(date +%s.%N)
                after=$(cpu_ticks)
                # Wall time of the whole client run, the same span as the CPU reading.
                seconds=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
                stop_server
                stop_upstream
                cpu=$(python3 -c "print(($after - $before) / 100)")
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                    "$setup" "$workload" "$server" "$rep" "$value" "$unit" "$requests" "$seconds" "$cpu" >>"$results"
                printf '   rep %s %-8s %-16s %-9s %10s %-5s cpu %5ss load %s\n' \
                    "$rep" "$setup" "$workload" "$server" "$value" "$unit" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" >&2
            done
        done
    done
done

python3 - "$results" "$other" <<'EOF'
import csv, statistics, sys
other = sys.argv[2]
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
order, data = [], {}
for r in rows:
    key = (r["setup"], r["workload"])
    if key not in data:
        order.append(key)
        data[key] = {}
    d = data[key].setdefault(r["server"], {"value": [], "cpu_us": [], "cpu_pct": [], "unit": r["unit"]})
    d["value"].append(float(r["value"]))
    requests, seconds, cpu = int(r["requests"]), float(r["seconds"]), float(r["cpu_seconds"])
    d["cpu_us"].append(cpu * 1e6 / requests if requests else float("nan"))
    d["cpu_pct"].append(100 * cpu / seconds if seconds else float("nan"))

med = statistics.median
print()
print(f"| setup | workload | unit | nbd-serve | {other} | ratio | paired ratio (per rep) | nbd-serve µs CPU/req | {other} µs CPU/req | nbd-serve CPU % | {other} CPU % |")
print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
for key in order:
    a, b = data[key].get("nbd-serve"), data[key].get(other)
    if not a or not b:
        continue
    ratio = med(a["value"]) / med(b["value"]) if med(b["value"]) else float("nan")
    pairs = [x / y if y else float("nan") for x, y in zip(a["value"], b["value"])]
    paired = f"{med(pairs):.2f} ({', '.join(f'{p:.2f}' for p in pairs)})"
    print(f"| {key[0]} | {key[1]} | {a['unit']} | {med(a['value']):.0f} | {med(b['value']):.0f} | {ratio:.2f} | {paired} "
          f"| {med(a['cpu_us']):.2f} | {med(b['cpu_us']):.2f} | {med(a['cpu_pct']):.0f} | {med(b['cpu_pct']):.0f} |")
print()
print(f"Medians over the reps; ratio = nbd-serve / {other} of the medians (throughput, higher is better for")
print(f"nbd-serve); paired ratio = median of each rep's nbd-serve / {other}, the two run back to back.")
print("CPU per request = server utime+stime / requests completed (nbdcopy: 256 KiB requests).")
EOF

if [ -n "$out" ]; then cp "$results" "$out"; fi

if [ "$rss" = 1 ]; then
    echo
    echo "| server | 1 TiB export, 256 MiB written | VmRSS MiB | VmHWM MiB |"
    echo "|---|---|---:|---:|"
    for pattern in sequential spread; do
        for server in nbd-serve $other; do
            start_server "$server" memory 1T
            if [ "$pattern" = sequential ]; then
                fio $(fio_common) --rw=write --bs=1m --iodepth=8 --size=256m >/dev/null
            else
                # 256 one-MiB blocks at random offsets over the whole export: sparse tables are exercised.
                fio $(fio_common) --rw=randwrite --bs=1m --iodepth=8 --size=1t --io_size=256m --norandommap >/dev/null
            fi
            rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")
            hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
            stop_server
            echo "| $server | $pattern | $((rss_kb / 1024)) | $((hwm_kb / 1024)) |"
        done
    done
fi
