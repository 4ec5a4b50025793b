import NBDCore

/// A decompressor for a format that can only be read from its start (gzip, bzip2): input in,
/// output out, one buffer at a time.
protocol StreamDecoder: ~Copyable {
    /// The filter's name, for messages.
    static var format: String { get }
    /// The bytes every member (stream) of the format starts with.
    static var magic: [UInt8] { get }

    /// Decodes from `input` into `output`.
    ///
    /// - Returns: how many bytes of `input` were used, how many of `output` were filled, and
    ///   whether the current member ended (the next input, if any, is a new member or trailing data).
    /// - Throws: `NBDError` (`EINVAL`) when the data is corrupt.
    mutating func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(NBDError) -> (consumed: Int, produced: Int, memberEnded: Bool)

    /// Starts a new member after the last one ended.
    mutating func reset() throws(NBDError)
}
