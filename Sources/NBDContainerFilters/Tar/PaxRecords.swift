import NBDCore

/// The records of a pax extended header: `LENGTH KEY=VALUE\n`, where LENGTH counts the whole record.
enum PaxRecords {
    /// The records of `data` by key (a later record of the same key wins, as in tar).
    ///
    /// - Throws: `NBDError` (`EINVAL`) when a record's length is not a number or runs past the data.
    static func parse(_ data: [UInt8]) throws(NBDError) -> [String: String] {
        var records: [String: String] = [:]
        var position = 0
        let corrupt = NBDError(.invalidArgument, "tar: the archive is corrupt: a pax extended header is malformed")
        while position < data.count {
            // Headers are padded with NULs after the last record.
            if data[position] == 0 { break }
            var length = 0
            var cursor = position
            while cursor < data.count, data[cursor] != UInt8(ascii: " ") {
                let byte = data[cursor]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), length < 1 << 24 else { throw corrupt }
                length = length * 10 + Int(byte - UInt8(ascii: "0"))
                cursor += 1
            }
            let end = position + length
            guard cursor < data.count, length > 0, end <= data.count, cursor + 1 < end,
                data[end - 1] == UInt8(ascii: "\n")
            else { throw corrupt }
            let record = data[(cursor + 1)..<(end - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { throw corrupt }
            let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
            records[key] = String(decoding: record[(equals + 1)...], as: UTF8.self)
            position = end
        }
        return records
    }
}
