# Sourced by side-by-side.sh and probe.sh, so that an A/B check with probe.sh runs exactly the
# workloads the side-by-side tables report. Not executable on its own.

# workload_fio_args NAME: prints fio's arguments for a fio workload (iodepth 16; "4c" = 4 jobs, each
# its own connection; "fl" = an NBD flush after every write), nothing for an nbdcopy workload.
# Returns 1 for an unknown name.
workload_fio_args() {
    case "$1" in
        randread4k) echo --rw=randread --bs=4k --iodepth=16 ;;
        randwrite4k) echo --rw=randwrite --bs=4k --iodepth=16 ;;
        seqread1m) echo --rw=read --bs=1m --iodepth=16 ;;
        seqwrite1m) echo --rw=write --bs=1m --iodepth=16 ;;
        randwrite4k4c) echo --rw=randwrite --bs=4k --iodepth=16 --numjobs=4 ;;
        randread4k4c) echo --rw=randread --bs=4k --iodepth=16 --numjobs=4 ;;
        randwrite4k4cfl) echo --rw=randwrite --bs=4k --iodepth=16 --numjobs=4 --fsync=1 ;;
        # Re-reads of a hot 64 MiB region (the rbdcache row: a cache in front of a remote store).
        hotread4k64m) echo --rw=randread --bs=4k --iodepth=16 --size=64m ;;
        nbdcopy4c|nbdcopy1c|convert1g) ;;
        *) return 1 ;;
    esac
}

# copy_for SECONDS NAME URI [PREFIX...]: runs `nbdcopy URI null:` (256 KiB requests, 4 connections
# for nbdcopy4c, 1 for nbdcopy1c) again and again until SECONDS have passed, each run prefixed by
# PREFIX (for example a perf command); prints "copies elapsed_seconds".
copy_for() {
    local seconds="$1" name="$2" uri="$3" connections=4 copies=0 start end
    shift 3
    [ "$name" = nbdcopy1c ] && connections=1
    start=$(date +%s.%N)
    while :; do
        "$@" nbdcopy -C "$connections" -T "$connections" --request-size=262144 "$uri" null:
        copies=$((copies + 1))
        end=$(date +%s.%N)
        python3 -c "import sys; sys.exit(0 if $end - $start >= $seconds else 1)" && break
    done
    python3 -c "print($copies, f'{$end - $start:.3f}')"
}

# convert_for SECONDS URI TARGET: runs `qemu-img convert -O raw URI TARGET` (CDI's importer copy)
# again and again until SECONDS have passed; prints "copies elapsed_seconds". TARGET is removed.
convert_for() {
    local seconds="$1" uri="$2" target="$3" copies=0 start end
    start=$(date +%s.%N)
    while :; do
        qemu-img convert -O raw "$uri" "$target"
        rm -f "$target"
        copies=$((copies + 1))
        end=$(date +%s.%N)
        python3 -c "import sys; sys.exit(0 if $end - $start >= $seconds else 1)" && break
    done
    python3 -c "print($copies, f'{$end - $start:.3f}')"
}
