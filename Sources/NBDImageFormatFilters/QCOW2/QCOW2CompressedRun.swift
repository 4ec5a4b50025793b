/// Compressed clusters of one read whose data follow one another in the file (qemu packs them
/// back to back), read from it in one request and then decompressed one by one.
struct QCOW2CompressedRun {
    /// One compressed cluster: `length` bytes at `host` of the file decompress to the cluster
    /// whose bytes `within..<(within + count)` go to `buffer[start...]`.
    struct Piece {
        var host: UInt64
        var length: UInt64
        var within: Int
        var start: Int
        var count: Int
    }

    /// The most file bytes one run reads at once.
    static let maximumBytes: UInt64 = 4 << 20

    private(set) var pieces: [Piece] = []
    /// The file range the pieces span.
    private(set) var host: UInt64 = 0
    private(set) var end: UInt64 = 0

    var isEmpty: Bool { pieces.isEmpty }

    /// Whether `piece`'s data start inside or right after the run's (a descriptor's length runs
    /// to the end of its last 512-byte sector, so the next cluster's data may start before it
    /// ends) and the run stays within ``maximumBytes``.
    func accepts(_ piece: Piece) -> Bool {
        guard !pieces.isEmpty else { return true }
        guard piece.host >= host, piece.host <= end else { return false }
        return max(end, piece.host + piece.length) - host <= Self.maximumBytes
    }

    mutating func append(_ piece: Piece) {
        if pieces.isEmpty {
            host = piece.host
            end = piece.host + piece.length
        } else {
            end = max(end, piece.host + piece.length)
        }
        pieces.append(piece)
    }

    mutating func removeAll() {
        pieces.removeAll(keepingCapacity: true)
    }
}
