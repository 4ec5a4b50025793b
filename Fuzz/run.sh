#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/<Name>/main.swift over the NBDServer module, compiled with
# -sanitize=fuzzer,address; ClientReplies over NBDClient; QCOW2 over NBDImageFormatFilters; LUKSHeader over NBDEncryptionFilters, with GnuTLS) and runs each for the given number of seconds (default 600).
#
#   Fuzz/run.sh [seconds] [name...]     e.g. Fuzz/run.sh 20, Fuzz/run.sh 600 Handshake
#   FUZZ_MERGE=1 Fuzz/run.sh ...        afterwards, merge inputs with new coverage into Fuzz/Corpus
#
# The package is built into its own scratch path (.build-fuzz) with --target, so nothing is linked
# there and the root Package.swift needs no fuzz targets. Each run starts from Fuzz/Corpus/<Name>
# (seeds kept in the repository) and writes new inputs to .build-fuzz/corpus/<Name>; a crash leaves
# its input in .build-fuzz/artifacts/ and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=(Handshake Connection ClientReplies QCOW2 LUKSHeader); fi

scratch=.build-fuzz
flags=(-Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
echo "== building NBDServer, NBDClient and NBDImageFormatFilters with -sanitize=fuzzer,address into $scratch"
swift build -c release --scratch-path "$scratch" --target NBDServer "${flags[@]}"
swift build -c release --scratch-path "$scratch" --target NBDClient "${flags[@]}"
swift build -c release --scratch-path "$scratch" --target NBDImageFormatFilters "${flags[@]}"
swift build -c release --scratch-path "$scratch" --target NBDEncryptionFilters "${flags[@]}"
bin=$(swift build -c release --scratch-path "$scratch" --show-bin-path)

objects=()
# NBDCore, the wire layer and the modules the targets use (NBDServer depends on no backend or filter).
for module in NBDCore NBDWire NBDServer NBDClient NBDImageFormatFilters; do
    objects+=("$bin/$module.build"/*.o)
done
# The luks filter's module and the one it uses (NBDFlowFilters' AsyncLock), and the library it links.
for module in NBDFlowFilters NBDEncryptionFilters; do
    objects+=("$bin/$module.build"/*.o)
done
libraries=(-lgnutls -Xcc -fmodule-map-file=Sources/CGnuTLS/module.modulemap)

mkdir -p "$scratch/fuzzers" "$scratch/artifacts"
status=0
for name in "${names[@]}"; do
    echo "== linking fuzzer $name"
    if ! swiftc -O -sanitize=fuzzer,address -parse-as-library -swift-version 6 -use-ld=lld \
        -I "$bin/Modules" -I Sources/CZlib "${libraries[@]}" "Fuzz/$name/main.swift" "${objects[@]}" -lz -o "$scratch/fuzzers/$name" \
        >"$scratch/link-$name.log" 2>&1; then
        cat "$scratch/link-$name.log"
        exit 1
    fi
    corpus="$scratch/corpus/$name"
    mkdir -p "$corpus"
    echo "== fuzzing $name for $seconds s"
    log="$scratch/fuzz-$name.log"
    # -rss_limit_mb: the server allocates at most a few MiB per input; more means a leak or a bug.
    if "$scratch/fuzzers/$name" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$scratch/artifacts/$name-" \
        "$corpus" "Fuzz/Corpus/$name" >"$log" 2>&1; then
        grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" \
            | sed "s/^/$name: /" || true
        grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/$name: /" || true
    else
        status=1
        echo "== $name FAILED; last lines of $log:"
        tail -n 60 "$log"
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        echo "== merging new coverage of $name into Fuzz/Corpus/$name"
        "$scratch/fuzzers/$name" -merge=1 -max_len=8192 "Fuzz/Corpus/$name" "$corpus" >"$scratch/merge-$name.log" 2>&1
    fi
done
exit $status
