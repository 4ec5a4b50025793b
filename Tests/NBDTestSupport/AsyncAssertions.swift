import NBDCore
import XCTest

/// Asserts that `expression` throws an ``NBDError`` with `code`, and returns the error.
@discardableResult
public func XCTAssertThrowsNBDError<T>(
    _ expression: () async throws(NBDError) -> T,
    code: NBDError.Code,
    _ message: String = "",
    file: StaticString = #filePath,
    line: UInt = #line
) async -> NBDError? {
    do {
        _ = try await expression()
        XCTFail("expected \(code) but nothing was thrown. \(message)", file: file, line: line)
        return nil
    } catch {
        XCTAssertEqual(error.code, code, "wrong error: \(error). \(message)", file: file, line: line)
        return error
    }
}

extension BlockBackend {
    /// Reads `count` bytes at `offset` into a new array (test convenience).
    public func readBytes(_ count: Int, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) -> [UInt8] {
        // `withUnsafeMutableBytes` cannot span an `await`, so read into a buffer we own.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { buffer.deallocate() }
        try await read(into: buffer, at: offset, flags: flags)
        return Array(buffer)
    }

    /// Writes `bytes` at `offset` (test convenience).
    public func writeBytes(_ bytes: [UInt8], at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try await write(UnsafeRawBufferPointer(buffer), at: offset, flags: flags)
    }

    /// Reads `count` bytes at `offset` as a string (test convenience).
    public func readString(_ count: Int, at offset: UInt64) async throws(NBDError) -> String {
        String(decoding: try await readBytes(count, at: offset), as: UTF8.self)
    }

    /// Writes the UTF-8 of `text` at `offset` (test convenience).
    public func writeString(_ text: String, at offset: UInt64, flags: CommandFlags = []) async throws(NBDError) {
        try await writeBytes(Array(text.utf8), at: offset, flags: flags)
    }
}

/// Asserts that what `value` returns equals `expected` (XCTAssertEqual cannot await).
public func assertEqual<T: Equatable>(
    _ value: () async throws -> T, _ expected: T, _ message: String = "", file: StaticString = #filePath,
    line: UInt = #line
) async rethrows {
    let observed = try await value()
    XCTAssertEqual(observed, expected, message, file: file, line: line)
}
