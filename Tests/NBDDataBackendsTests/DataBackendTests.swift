import Foundation
import NBDBackends
import NBDCore
import NBDDataBackends
import NBDTestSupport
import XCTest

/// The data backend's format, checked against what nbdkit 1.32 serves for the same strings.
final class DataBackendTests: XCTestCase {
    private func bytes(
        _ data: String, size: UInt64? = nil, variables: [String: String] = [:]
    ) async throws -> [UInt8] {
        let provider = try await DataBackendProvider(data: data, size: size, variable: { variables[$0] })
        let backend = try await provider.open(ConnectionInfo())
        return try await backend.readBytes(Int(provider.size), at: 0)
    }

    func testBytesInDecimalHexAndOctalWithOffsets() async throws {
        let result = try await bytes("0 1 0x2 03 @0x1fe 0x55 0xaa")
        XCTAssertEqual(result.count, 512)
        XCTAssertEqual(Array(result.prefix(5)), [0, 1, 2, 3, 0])
        XCTAssertEqual(Array(result.suffix(2)), [0x55, 0xaa])
        let aligned = try await bytes("0 1 2 3 @^0x200 @-2 le16:0xaa55")
        XCTAssertEqual(aligned, result)
    }

    func testWordsStringsAndEscapes() async throws {
        let words = try await bytes("le16:0x1234 be32:1 le64:2 be16:0xbeef")
        XCTAssertEqual(words, [0x34, 0x12, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xef])
        let string = try await bytes(#""a\x41\n\"" 0377 010"#)
        XCTAssertEqual(string, [0x61, 0x41, 0x0a, 0x22, 0xff, 0x08])
    }

    func testGroupsRepeatsSlicesAndOverwrites() async throws {
        let repeated = try await bytes("( 0x55 0xAA )*2048")
        XCTAssertEqual(repeated.count, 4096)
        XCTAssertEqual(Array(repeated.suffix(4)), [0x55, 0xaa, 0x55, 0xaa])
        let hello = try await bytes(#"( "Hello" )*2000"#, size: 8192)
        XCTAssertEqual(hello.count, 8192)
        XCTAssertEqual(Array(hello[8185..<8192]), Array("HelloHe".utf8))
        // As nbdkit: a nested group overwrites its whole extent, zeroes included.
        let overwritten = try await bytes("1 2 3 @0 ( @2 )")
        XCTAssertEqual(overwritten, [0, 0, 3])
        let sliced = try await bytes("( 1 2 3 )[1:]*2")
        XCTAssertEqual(sliced, [2, 3, 2, 3])
        let moved = try await bytes("1 2 @-1 @+4")
        XCTAssertEqual(moved, [1, 2, 0, 0, 0])
        let fills = try await bytes("0*3 1*0 @4")
        XCTAssertEqual(fills, [0, 0, 0, 0])
        let dense = try await bytes("( 0x55 0xAA 1 )*3000000")
        XCTAssertEqual(dense.count, 9_000_000)
        XCTAssertEqual(Array(dense[8_999_997..<9_000_000]), [0x55, 0xaa, 1])
        let big = try await bytes("0xff*1048576 7")
        XCTAssertEqual(big.count, (1 << 20) + 1)
        XCTAssertEqual(big[(1 << 20) - 1], 0xff)
        XCTAssertEqual(big.last, 7)
    }

    func testNamesAreScopedAndVariablesComeFromTheLookup() async throws {
        let sectors = try await bytes(
            #" ( 0x55 0xAA ) -> \boot-signature ( @0x1fe \boot-signature ) -> \sector \sector \sector "#)
        XCTAssertEqual(sectors.count, 1024)
        XCTAssertEqual(Array(sectors[510..<512]), [0x55, 0xaa])
        XCTAssertEqual(Array(sectors[1022..<1024]), [0x55, 0xaa])
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await DataBackendProvider(data: #"( 1 -> \a \a ) \a"#, variable: { _ in nil })
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains(#"\a"#) ?? false, error?.message ?? "")
        let substituted = try await bytes("$pattern*2 # a comment\n 9", variables: ["pattern": "0x55 0xAA"])
        XCTAssertEqual(substituted, [0x55, 0xaa, 0x55, 0xaa, 9])
    }

    func testFilesAndFileSlices() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("f1").path
        try Data("hi\n".utf8).write(to: URL(fileURLWithPath: file))
        let result = try await bytes("<\(file)[1:2]*3 <\(file)")
        XCTAssertEqual(result, Array("iiihi\n".utf8))
        let random = try await bytes("</dev/urandom[:512]*4")
        XCTAssertEqual(random.count, 2048)
        XCTAssertEqual(Array(random[0..<512]), Array(random[1536..<2048]))
        let aligned = try await bytes("<\(file) @^512 <\(file) @^512")
        XCTAssertEqual(aligned.count, 1024)
        XCTAssertEqual(Array(aligned[512..<515]), Array("hi\n".utf8))
    }

    func testScriptsOutputIsStoredAndAnEndlessScriptIsStoppedBySlicing() async throws {
        let echo = try await bytes("1 <( printf '%s' \"(ab)\" ) 2")
        XCTAssertEqual(echo, [1] + Array("(ab)".utf8) + [2])
        let endless = try await bytes("<( i=0; while :; do printf '%04d' $i; i=$((i+1)); done )[:32]")
        XCTAssertEqual(endless, Array("00000001000200030004000500060007".utf8))
        let sliced = try await bytes("<( printf abcdef )[2:4]")
        XCTAssertEqual(sliced, Array("cd".utf8))
    }

    func testSizeTruncatesOrPadsAndTheExportIsAWritableSparseDisk() async throws {
        let provider = try await DataBackendProvider(data: "1 2 3 @8K 4", size: 1 << 20)
        XCTAssertEqual(provider.size, 1 << 20)
        let backend = try await provider.open(ConnectionInfo())
        let extents = try await backend.extents(count: 1 << 20, at: 0, flags: [])
        // (MemoryBackend's own extents are visible only where NBDBackends is imported.)
        XCTAssertEqual(extents, [.data(65536), .hole((1 << 20) - 65536)], "the padding is a hole")
        try await backend.writeBytes([9], at: 100)
        let other = try await provider.open(ConnectionInfo())
        let read = try await other.readBytes(4, at: 0)
        XCTAssertEqual(read, [1, 2, 3, 0])
        let written = try await other.readBytes(1, at: 100)
        XCTAssertEqual(written, [9], "connections share the data")
        let truncated = try await bytes("1 2 3 4", size: 2)
        XCTAssertEqual(truncated, [1, 2])
    }

    func testOtherParametersAreVariablesBeforeTheEnvironment() async throws {
        setenv("NBD_SERVE_TEST_PATTERN", "7", 1)
        defer { unsetenv("NBD_SERVE_TEST_PATTERN") }
        let provider = try await DataBackendProvider(
            parameters: ["data": "$outer*2 $NBD_SERVE_TEST_PATTERN", "outer": "( $inner 3 )", "inner": "1 2"],
            options: BackendOptions())
        let bytes = try await provider.open(ConnectionInfo()).readBytes(7, at: 0)
        XCTAssertEqual(bytes, [1, 2, 3, 1, 2, 3, 7], "nested command-line variables, then the environment")
        let shadowed = try await DataBackendProvider(
            parameters: ["data": "$NBD_SERVE_TEST_PATTERN", "NBD_SERVE_TEST_PATTERN": "9"], options: BackendOptions())
        let first = try await shadowed.open(ConnectionInfo()).readBytes(1, at: 0)
        XCTAssertEqual(first, [9], "the command line wins over the environment")
    }

    func testRawBase64AndTheParametersRules() async throws {
        let raw = try await DataBackendProvider(parameters: ["raw": "Hello, world!"], options: BackendOptions())
        let rawBytes = try await raw.open(ConnectionInfo()).readBytes(13, at: 0)
        XCTAssertEqual(rawBytes, Array("Hello, world!".utf8))
        let base64 = try await DataBackendProvider(
            parameters: ["base64": "MTIz", "size": "1M"], options: BackendOptions())
        XCTAssertEqual(base64.size, 1 << 20)
        let decoded = try await base64.open(ConnectionInfo()).readBytes(4, at: 0)
        XCTAssertEqual(decoded, [0x31, 0x32, 0x33, 0])
        for allocator in ["sparse", "malloc", "malloc,mlock=false"] {
            _ = try await DataBackendProvider(
                parameters: ["data": "1", "allocator": allocator], options: BackendOptions())
        }
        let cases: [(ParameterValues, String)] = [
            ([:], "exactly one of"),
            (["data": "1", "raw": "x"], "only one of"),
            (["data": "1", "allocator": "zstd"], "allocator=zstd: expected sparse or malloc"),
            (["data": "1", "allocator": "malloc,mlock=true"], "allocator="),
            (["base64": "!!!"], "base64="),
            (["data": "256"], "0 to 255"),
            (["data": "@^3"], "power of 2"),
            (["data": "( 1"], "unmatched '('"),
            (["data": "1 )"], "unmatched ')'"),
            (["data": "\"abc"], "unterminated string"),
            (["data": "*2"], "*N must follow"),
            (["data": "@-1"], "must not be larger than the current offset"),
            (["data": "(1 2)[3:1]"], "valid slice"),
            (["data": "(1 2)[0:3]"], "valid slice"),
            (["data": "<(exit 3)"], "failed (exit status 3)"),
            (["data": "<(echo hi"], "no matching ')'"),
            (["data": "$NBD_SERVE_TEST_NO_SUCH_VARIABLE"], "variable not found"),
            (["data": "<\(FileManager.default.temporaryDirectory.path)/no-such-file"], "cannot open"),
            (["data": "le16:0x10000"], "16 bits"),
            (["data": "1", "size": "1Q"], "size="),
            (["data": "$pattern", "pattern": "1", "sise": "1M"], "unknown parameter sise=: not a parameter of the data backend"),
            (["raw": "x", "pattern": "1"], "unknown parameter pattern=: the data backend takes variables only with data="),
            (ParameterValues([.init(key: "data", value: "1"), .init(key: "data", value: "2")]), "data= is given 2 times"),
        ]
        for (parameters, text) in cases {
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in
                    try await DataBackendProvider(parameters: parameters, options: BackendOptions())
                },
                code: .invalidArgument, "\(parameters)")
            XCTAssertTrue(error?.message.contains(text) ?? false, "'\(error?.message ?? "")' lacks '\(text)'")
        }
    }
}
