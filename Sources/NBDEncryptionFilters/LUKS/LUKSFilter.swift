import NBDCore
import NBDFlowFilters

/// nbdkit's luks filter for one connection: the decrypted contents of a LUKSv1 image below.
///
/// The export is the encrypted area (everything from the header's payload offset on); byte 0 of
/// the export is sector 0 of the LUKS volume. Reads decrypt in the caller's buffer, writes encrypt
/// into a cipher handle's scratch buffer, both 512-byte sector by sector; a request that does not
/// cover whole sectors reads, decrypts and re-encrypts the sectors at its ends (read-modify-write,
/// serialized by the layer's lock as nbdkit's is).
struct LUKSFilter<Next: BlockBackend>: Filter {
    let next: Next
    let volume: LUKSVolume
    let capabilities: Capabilities
    /// Serializes read-modify-write of partial sectors (shared by every connection of the layer).
    let partialSectorLock: AsyncLock

    private static var sectorSize: UInt64 { UInt64(SectorCipher.sectorSize) }
    private var payloadOffset: UInt64 { volume.header.payloadOffset }

    init(wrapping next: Next, volume: LUKSVolume, partialSectorLock: AsyncLock) {
        self.next = next
        self.volume = volume
        self.partialSectorLock = partialSectorLock
        capabilities = Self.capabilities(below: next.capabilities, payloadOffset: volume.header.payloadOffset)
    }

    /// What the export offers: the payload's size; zeroes written as encrypted zeros (zeros on disk
    /// would decrypt to noise); no trim, fast zero or allocation status, since none of them can be
    /// expressed below without leaking or losing data; cache requests passed below (as the
    /// encrypted range);
    /// sector-sized blocks advertised (as a hint: other requests are served by read-modify-write).
    static func capabilities(below: Capabilities, payloadOffset: UInt64) -> Capabilities {
        var capabilities = below
        capabilities.size = below.size - payloadOffset
        capabilities.canTrim = false
        capabilities.canZero = below.isWritable
        capabilities.canFastZero = false
        capabilities.canExtents = false
        var blockSize = below.blockSize
        blockSize.minimum = max(blockSize.minimum, UInt32(SectorCipher.sectorSize))
        blockSize.preferred = max(blockSize.preferred, blockSize.minimum)
        blockSize.maximumPayload = max(blockSize.maximumPayload, blockSize.preferred)
        blockSize.isEnforced = false
        capabilities.blockSize = blockSize
        // Reads keep the layer below's kind: over a file they run inline on the connection's thread
        // (a 4 KiB read decrypts in microseconds, less than a hand-off to the pool costs, and a
        // 1 MiB one in about a millisecond). Writes and zeroes also write to the layer below, so
        // they run on the server's pool, several at once on every core.
        capabilities.slowOperations.formUnion([.write, .zero])
        return capabilities
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let sector = Self.sectorSize
        if offset % sector == 0 && UInt64(buffer.count) % sector == 0 {
            try await next.read(into: buffer, at: payloadOffset + offset, flags: flags)
            try volume.ciphers.decrypt(buffer, firstSector: offset / sector)
            return
        }
        let start = offset / sector * sector
        let end = (offset + UInt64(buffer.count) + sector - 1) / sector * sector
        let covering = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - start), alignment: 64)
        defer { covering.deallocate() }
        try await next.read(into: covering, at: payloadOffset + start, flags: flags)
        try volume.ciphers.decrypt(covering, firstSector: start / sector)
        let skip = Int(offset - start)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: covering[skip..<(skip + buffer.count)]))
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await store(count: data.count, at: offset, flags: flags) { range, destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: data[range]))
        }
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard !flags.contains(.fastZero) else {
            throw NBDError(.notSupported, "luks: a fast zero is not possible: zeros must be encrypted and written")
        }
        try await store(count: Int(count), at: offset, flags: flags.subtracting([.noHole, .fastZero])) {
            _, destination in
            destination.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Writes `count` bytes at `offset` whose plaintext `fill` produces, piece by piece: `fill` gets
    /// the range of the request a piece covers and the bytes to fill.
    ///
    /// Only the partial sectors at either end are read, modified and written back: the whole sectors
    /// between them are encrypted in bounded pieces. A zero request may be far larger than any
    /// payload (above 4 GiB with extended headers), so nothing here is sized by the request.
    private func store(
        count: Int, at offset: UInt64, flags: CommandFlags,
        fill: (Range<Int>, UnsafeMutableRawBufferPointer) -> Void
    ) async throws(NBDError) {
        guard count > 0 else { return }
        let sector = Self.sectorSize
        let end = offset + UInt64(count)
        let bodyStart = (offset + sector - 1) / sector * sector
        let bodyEnd = end / sector * sector
        guard bodyStart < bodyEnd else {
            // No whole sector: at most two partial ones.
            return try await storePartial(range: 0..<count, at: offset, flags: flags, fill: fill)
        }
        let head = Int(bodyStart - offset)
        let tail = Int(bodyEnd - offset)
        if head > 0 {
            try await storePartial(range: 0..<head, at: offset, flags: flags, fill: fill)
        }
        try await storeSectors(range: head..<tail, at: bodyStart, flags: flags, fill: fill)
        if tail < count {
            try await storePartial(range: tail..<count, at: bodyEnd, flags: flags, fill: fill)
        }
    }

    /// Writes the whole sectors that bytes `range` of a request cover, starting at `offset` (a
    /// sector boundary), in pieces of at most ``SectorCipher/scratchLimit`` bytes.
    private func storeSectors(
        range: Range<Int>, at offset: UInt64, flags: CommandFlags,
        fill: (Range<Int>, UnsafeMutableRawBufferPointer) -> Void
    ) async throws(NBDError) {
        let sector = Self.sectorSize
        let cipher = try volume.ciphers.checkOut()
        defer { volume.ciphers.checkIn(cipher) }
        var done = 0
        while done < range.count {
            let length = min(range.count - done, SectorCipher.scratchLimit)
            let scratch = cipher.scratch(count: length)
            let start = range.lowerBound + done
            fill(start..<(start + length), scratch)
            let position = offset + UInt64(done)
            try cipher.encrypt(scratch, firstSector: position / sector)
            try await next.write(UnsafeRawBufferPointer(scratch), at: payloadOffset + position, flags: flags)
            done += length
        }
    }

    /// Writes bytes `range` of a request, at `offset`, that do not cover whole sectors (they lie
    /// within at most two): reads the sectors they touch, decrypts them, lays the new bytes over
    /// them, encrypts and writes them back, with the layer's lock held so that two such writes in
    /// one sector do not undo each other.
    private func storePartial(
        range: Range<Int>, at offset: UInt64, flags: CommandFlags,
        fill: (Range<Int>, UnsafeMutableRawBufferPointer) -> Void
    ) async throws(NBDError) {
        let count = range.count
        guard count > 0 else { return }
        let sector = Self.sectorSize
        let start = offset / sector * sector
        let end = (offset + UInt64(count) + sector - 1) / sector * sector
        let covering = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - start), alignment: 64)
        defer { covering.deallocate() }
        let skip = Int(offset - start)
        await partialSectorLock.lock()
        defer { partialSectorLock.unlock() }
        try await next.read(into: covering, at: payloadOffset + start, flags: [])
        let cipher = try volume.ciphers.checkOut()
        defer { volume.ciphers.checkIn(cipher) }
        try cipher.decrypt(covering, firstSector: start / sector)
        fill(range, UnsafeMutableRawBufferPointer(rebasing: covering[skip..<(skip + count)]))
        try cipher.encrypt(covering, firstSector: start / sector)
        try await next.write(UnsafeRawBufferPointer(covering), at: payloadOffset + start, flags: flags)
    }

    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notSupported, "luks: trim is not supported (it would expose which sectors are unused)")
    }

    /// Asks the layer below to cache the encrypted bytes: decrypting ahead of time would only
    /// throw the result away.
    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.cache(count: count, at: payloadOffset + offset, flags: flags)
    }

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }
}
