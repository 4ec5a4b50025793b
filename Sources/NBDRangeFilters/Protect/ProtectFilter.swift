import NBDCore

/// nbdkit's protect filter for one connection: write-protects ranges of the layer below while the
/// export stays writable, for example to keep a client from rewriting a boot sector or adding a
/// phony image header.
///
/// ```swift
/// let ranges = try ProtectedRanges(parsing: ["0-0x1bd"])     // the boot code, not the partition table
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, _ in ProtectFilter(wrapping: next, protecting: ranges) }
/// ```
///
/// Reads are never affected. A write, zero or trim that touches a protected byte is allowed only if
/// it would not change what that byte reads as; otherwise it fails with `EPERM` and nothing of it is
/// done:
/// - a write is compared with the data the layer below holds there;
/// - a zero request needs the protected bytes to read as zeroes already;
/// - a trim needs the same, and then the protected parts are left out of the trim sent down (a
///   trimmed range may read back as anything, which would change protected bytes; nbdkit sends the
///   whole trim down).
///
/// Protected bytes are never changed, so concurrent requests cannot race a check: a write that
/// passes it writes exactly the bytes already there.
public struct ProtectFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The protected ranges.
    public let protected: ProtectedRanges

    /// Protects `ranges` of `next`. Ranges beyond the end of the export simply never match.
    public init(wrapping next: Next, protecting ranges: ProtectedRanges) {
        self.next = next
        self.protected = ranges
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        if protected.overlaps(UInt64(data.count), at: offset) {
            try await checkUnchanged(by: data, at: offset)
        }
        try await next.write(data, at: offset, flags: flags)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if protected.overlaps(count, at: offset) {
            try await checkUnchanged(by: nil, count: count, at: offset)
        }
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard protected.overlaps(count, at: offset) else {
            return try await next.trim(count: count, at: offset, flags: flags)
        }
        try await checkUnchanged(by: nil, count: count, at: offset)
        // Trim only the unprotected gaps between the protected parts.
        var position = offset
        let end = offset + count
        for part in protected.protectedParts(of: count, at: offset) {
            if part.offset > position {
                try await next.trim(count: part.offset - position, at: position, flags: flags)
            }
            position = part.offset + part.count
        }
        if position < end {
            try await next.trim(count: end - position, at: position, flags: flags)
        }
    }

    /// Checks that writing `data` at `offset` leaves every protected byte as it is.
    @usableFromInline
    func checkUnchanged(by data: UnsafeRawBufferPointer, at offset: UInt64) async throws(NBDError) {
        try await checkUnchanged(by: data, count: UInt64(data.count), at: offset)
    }

    /// Checks that the protected parts of `count` bytes at `offset` read as `data` (or as zeroes when
    /// `data` is `nil`), or throws `EPERM` naming the first protected byte that would change.
    @usableFromInline
    func checkUnchanged(by data: UnsafeRawBufferPointer?, count: UInt64, at offset: UInt64) async throws(NBDError) {
        for part in protected.protectedParts(of: count, at: offset) {
            // Compare in bounded pieces so a large zero request over a protected range needs no
            // buffer of its size.
            let chunk = Int(min(part.count, 1 << 20))
            let current = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
            defer { current.deallocate() }
            var done: UInt64 = 0
            while done < part.count {
                let n = Int(min(UInt64(chunk), part.count - done))
                let at = part.offset + done
                let slice = UnsafeMutableRawBufferPointer(rebasing: current[..<n])
                try await next.read(into: slice, at: at, flags: [])
                let same: Bool
                if let data {
                    let start = Int(at - offset)
                    same = slice.elementsEqual(data[start..<(start + n)])
                } else {
                    same = slice.allSatisfy { $0 == 0 }
                }
                guard same else {
                    throw NBDError(
                        .notPermitted,
                        "the protect filter refused a request that would change protected bytes in \(part.offset)-\(part.offset + part.count - 1)"
                    )
                }
                done += UInt64(n)
            }
        }
    }
}
