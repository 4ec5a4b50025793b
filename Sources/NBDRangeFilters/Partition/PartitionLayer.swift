import NBDCore

/// nbdkit's partition filter as a run-time `FilterLayer`: serves one partition of a partitioned
/// disk as the whole export, `nbd-serve --filter=partition file disk.img partition=1`.
///
/// Each connection reads the partition table (MBR, with logical partitions, or GPT) from the layer
/// below when it opens, and is refused when the partition is not there; the partition is then
/// served through an ``OffsetFilter``. In a static stack, call ``PartitionTable/locate(partition:sectorSize:in:)``
/// and wrap an ``OffsetFilter`` yourself.
public struct PartitionLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The partition served, counting from 1.
    public let partition: UInt32
    /// The sector size of the table, 512 or 4096, or `nil` to take it from the layer below.
    public let sectorSize: UInt64?

    /// Serves partition `partition` (from 1).
    public init(partition: UInt32, sectorSize: UInt64? = nil) {
        self.partition = partition
        self.sectorSize = sectorSize
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let location = try await PartitionTable.locate(partition: partition, sectorSize: sectorSize, in: next)
        return AnyBlockBackend(try OffsetFilter(wrapping: next, offset: location.offset, range: location.length))
    }
}

extension PartitionLayer: ConfigurableFilterLayer {
    public static var filterName: String { "partition" }
    public static var summary: String { "serve one partition (MBR or GPT) of the disk below as the whole export" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "partition", "the partition number, from 1 (in an MBR, 5 and up are logical partitions)",
                required: true),
            ParameterDescription(
                "partition-sectorsize",
                "the sector size of the partition table: 512 or 4k (default: the layer below's minimum block size if 512 or 4k, else 512)"
            ),
        ]
    }

    /// Creates the layer from `partition` and `partition-sectorsize`.
    public init(parameters: ParameterValues) throws(NBDError) {
        _ = try parameters.required("partition", example: "1")
        let number: UInt32 = try parameters.integer("partition", in: 1...UInt32.max)!
        var sectorSize: UInt64?
        if let text = parameters["partition-sectorsize"] {
            let size = try? parseSize(text, for: "partition-sectorsize")
            guard let size, size == 512 || size == 4096 else {
                throw NBDError(.invalidArgument, "partition-sectorsize=\(text): expected 512 or 4k")
            }
            sectorSize = size
        }
        self.init(partition: number, sectorSize: sectorSize)
    }
}
