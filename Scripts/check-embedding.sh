#!/usr/bin/env bash
# Checks what a program that embeds this package sees: a scratch package outside the repository
# depends on it by path, imports NBDServer (and NBDCore) only, serves a backend of its own, and must
# not see nbd-serve's command-line types or the fuzzing entry points.
#
#   Scripts/check-embedding.sh        (CI runs it; about a minute on 2 cores)
#
# With nbdinfo installed, the scratch server is also asked for its size over a Unix socket.
set -euo pipefail
repository="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d /tmp/nbd-embedding.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

mkdir -p "$scratch/Sources/Embedder"
cat >"$scratch/Package.swift" <<EOF
// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Embedder",
    dependencies: [.package(path: "$repository")],
    targets: [
        .executableTarget(
            name: "Embedder",
            dependencies: [
                .product(name: "NBDCore", package: "$(basename "$repository")"),
                .product(name: "NBDServer", package: "$(basename "$repository")"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
EOF

# A backend of the embedder's own: 1 MiB of bytes that read as 0x5A.
cat >"$scratch/Sources/Embedder/main.swift" <<'EOF'
import NBDCore
import NBDServer

struct PatternBackend: BlockBackend {
    var capabilities: Capabilities { Capabilities(size: 1 << 20, isWritable: false, canFlush: false, fua: .none, canTrim: false, canZero: false, canFastZero: false) }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5A)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }
    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }
    func flush(flags: CommandFlags) async throws(NBDError) {}
    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [Extent(length: count, flags: [])]
    }
    func close() async {}
}

struct PatternProvider: BackendProvider {
    func open(_ connection: ConnectionInfo) async throws(NBDError) -> PatternBackend { PatternBackend() }
}

let path = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "/tmp/embedder.sock"
let server = NBDServer(provider: PatternProvider())
let address = try server.listen(on: .unix(path: path))
// In top-level code, as most embedders write it: the handler must not run as main-actor code.
let signals = server.shutdownOnSignals()
print("serving \(address.uri)")
await server.run()
signals.cancel()
print("stopped")
EOF

cd "$scratch"
echo "== building a scratch package that embeds NBDServer"
if ! swift build --scratch-path "$scratch/.build" >"$scratch/build.log" 2>&1; then
    cat "$scratch/build.log" >&2
    echo "check-embedding: FAILED: the scratch package that embeds NBDServer does not build" >&2
    exit 1
fi

# Each of these must be invisible to the embedder: nbd-serve's command line and the fuzz hooks.
for hidden in ServeOptions ExportPlan ServeCatalog HelpText FuzzEntryPoints MemoryTransport FilterRegistry; do
    printf 'import NBDCore\nimport NBDServer\nfunc leak() { _ = %s.self }\n' "$hidden" >"$scratch/Sources/Embedder/Leak.swift"
    if swift build --scratch-path "$scratch/.build" >"$scratch/leak.log" 2>&1; then
        echo "check-embedding: FAILED: an embedder of NBDServer can see '$hidden'" >&2
        exit 1
    fi
    if ! grep -q "cannot find '$hidden' in scope" "$scratch/leak.log"; then
        echo "check-embedding: FAILED: building with '$hidden' failed for another reason:" >&2
        cat "$scratch/leak.log" >&2
        exit 1
    fi
    echo "check-embedding: '$hidden' is not visible to an embedder"
done
rm "$scratch/Sources/Embedder/Leak.swift"
swift build --scratch-path "$scratch/.build" >/dev/null

if command -v nbdinfo >/dev/null; then
    socket="$scratch/embedder.sock"
    "$scratch/.build/debug/Embedder" "$socket" >"$scratch/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        [ -S "$socket" ] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$scratch/server.log" >&2; exit 1; }
        sleep 0.1
    done
    size=$(timeout 30 nbdinfo --size "nbd+unix:///?socket=$socket")
    if [ "$size" != 1048576 ]; then
        echo "check-embedding: FAILED: the embedded server answered size '$size', not 1048576" >&2
        exit 1
    fi
    echo "check-embedding: nbdinfo read the embedder's own backend through NBDServer (size $size)"

    # SIGTERM stops it through NBDServer.shutdownOnSignals(): run() returns and the program ends.
    kill -TERM "$server_pid"
    status=0
    timeout 30 tail --pid="$server_pid" -f /dev/null || status=$?
    if [ "$status" -ne 0 ]; then
        echo "check-embedding: FAILED: the embedder did not stop within 30 s of SIGTERM" >&2
        exit 1
    fi
    wait "$server_pid" || status=$?
    server_pid=""
    if [ "$status" -ne 0 ] || ! grep -q '^stopped$' "$scratch/server.log"; then
        echo "check-embedding: FAILED: SIGTERM did not stop the embedder cleanly (exit $status):" >&2
        cat "$scratch/server.log" >&2
        exit 1
    fi
    echo "check-embedding: SIGTERM stopped the embedded server (shutdownOnSignals)"
else
    echo "check-embedding: nbdinfo not installed; built the embedder but did not connect to it"
fi
echo "check-embedding: OK"
