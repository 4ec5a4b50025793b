import Glibc
import NBDCore

/// Evaluates parsed data expressions into a ``DataImage``, as nbdkit's data plugin lays them out:
/// each expression stores at the current offset and moves it on; nested expressions (groups,
/// repeats, slices, names) are evaluated on their own from offset 0 and then pasted whole.
struct DataEvaluator {
    /// Evaluates `list` in a scope where `names` are bound.
    static func evaluate(_ list: [DataExpression], names: Names = Names()) throws(NBDError) -> DataImage {
        var image = DataImage()
        var offset: UInt64 = 0
        var names = names
        for expression in list {
            switch expression {
            case .bytes(let bytes):
                try image.store(.bytes(bytes[...]), at: offset)
                offset += UInt64(bytes.count)
            case .fill(let byte, let count):
                try image.store(.fill(byte, count), at: offset)
                offset += count
            case .absoluteOffset(let target):
                offset = target
            case .relativeOffset(let delta):
                if delta < 0 {
                    guard delta.magnitude <= offset else {
                        throw NBDError(
                            .invalidArgument,
                            "data: @-\(delta.magnitude) must not be larger than the current offset \(offset)")
                    }
                    offset -= delta.magnitude
                } else {
                    offset = try add(offset, UInt64(delta))
                }
            case .align(let alignment):
                let remainder = offset % alignment
                if remainder != 0 { offset = try add(offset, alignment - remainder) }
            case .file(let path):
                let bytes = try readFile(path, skip: 0, limit: nil)
                try image.store(.bytes(bytes[...]), at: offset)
                offset += UInt64(bytes.count)
            case .script(let script):
                let bytes = try DataScript.run(script, limit: nil)
                try image.store(.bytes(bytes[...]), at: offset)
                offset = try add(offset, UInt64(bytes.count))
            case .assign(let name, let bound):
                names.bind(name, to: bound)
            default:
                offset = try paste(expression, into: &image, at: offset, names: names)
            }
            guard offset <= UInt64(Int64.max) else {
                throw NBDError(.invalidArgument, "data: offset \(offset) is larger than 2^63 - 1")
            }
            image.size = max(image.size, offset)
        }
        return image
    }

    /// Evaluates a nested expression and pastes it at `offset`; returns the offset after it.
    private static func paste(
        _ expression: DataExpression, into image: inout DataImage, at offset: UInt64, names: Names
    ) throws(NBDError) -> UInt64 {
        switch expression {
        case .group(let list):
            let inner = try evaluate(list, names: names)
            try image.paste(inner, range: 0..<inner.size, at: offset)
            return offset + inner.size
        case .name(let name):
            guard let (bound, visible) = names.lookup(name) else {
                throw NBDError(.invalidArgument, "data: \\\(name) is not defined in this scope")
            }
            let inner = try evaluate([bound], names: visible)
            try image.paste(inner, range: 0..<inner.size, at: offset)
            return offset + inner.size
        case .repeated(let inner, let count):
            // A repeated byte is one run however long.
            if case .bytes(let bytes) = inner, bytes.count == 1 {
                let total = try multiply(1, count)
                try image.store(.fill(bytes[0], total), at: offset)
                return try add(offset, total)
            }
            let unit = try evaluate([inner], names: names)
            let total = try multiply(unit.size, count)
            _ = try add(offset, total)
            if unit.runs.isEmpty {
                image.clear(offset..<offset + total)
                return offset + total
            }
            if unit.runs.count == 1, case .fill(let byte, let length) = unit.runs[0].content, length == unit.size {
                try image.store(.fill(byte, total), at: offset)
                return offset + total
            }
            // A dense pattern (`( 0x55 0xAA )*1000000`) becomes one run of bytes, built by doubling.
            if unit.runs.count == 1, unit.runs[0].start == 0, case .bytes(let bytes) = unit.runs[0].content,
                UInt64(bytes.count) == unit.size, total <= maximumFileRead
            {
                var repeated = [UInt8]()
                repeated.reserveCapacity(Int(total))
                repeated.append(contentsOf: bytes)
                while repeated.count < Int(total) {
                    repeated.append(contentsOf: repeated[0..<min(repeated.count, Int(total) - repeated.count)])
                }
                try image.store(.bytes(repeated[...]), at: offset)
                return offset + total
            }
            guard count <= UInt64(DataImage.maximumRuns) else {
                throw NBDError(.invalidArgument, "data: *\(count) repeats a pattern too many times to store")
            }
            var position = offset
            for _ in 0..<count {
                try image.paste(unit, range: 0..<unit.size, at: position)
                position += unit.size
            }
            return position
        case .slice(let inner, let start, let end):
            // A slice of a file reads only what it needs, so </dev/urandom[:512] ends.
            if case .file(let path) = inner {
                let bytes = try readFile(path, skip: start, limit: end.map { $0 - start })
                if let end, UInt64(bytes.count) < end - start {
                    throw NBDError(.invalidArgument, "data: <\(path)[\(start):\(end)] goes past the end of the file")
                }
                try image.store(.bytes(bytes[...]), at: offset)
                return try add(offset, UInt64(bytes.count))
            }
            // <(SCRIPT)[:LEN] stops reading after LEN bytes, so an endless script ends.
            if case .script(let script) = inner, start == 0, let end {
                let bytes = try DataScript.run(script, limit: end)
                guard UInt64(bytes.count) == end else {
                    throw NBDError(
                        .invalidArgument, "data: <(SCRIPT)[:\(end)] wrote only \(bytes.count) bytes")
                }
                try image.store(.bytes(bytes[...]), at: offset)
                return try add(offset, end)
            }
            let unit = try evaluate([inner], names: names)
            let upper = end ?? unit.size
            guard start <= unit.size, upper <= unit.size else {
                throw NBDError(
                    .invalidArgument,
                    "data: [\(start):\(end.map(String.init) ?? "")] does not describe a valid slice of \(unit.size) bytes"
                )
            }
            try image.paste(unit, range: start..<upper, at: offset)
            return try add(offset, upper - start)
        default:
            let unit = try evaluate([expression], names: names)
            try image.paste(unit, range: 0..<unit.size, at: offset)
            return try add(offset, unit.size)
        }
    }

    private static func add(_ a: UInt64, _ b: UInt64) throws(NBDError) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard !overflow, sum <= UInt64(Int64.max) else {
            throw NBDError(.invalidArgument, "data: offset \(a) + \(b) is larger than 2^63 - 1")
        }
        return sum
    }

    private static func multiply(_ a: UInt64, _ b: UInt64) throws(NBDError) -> UInt64 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, product <= UInt64(Int64.max) else {
            throw NBDError(.invalidArgument, "data: \(a) bytes * \(b) is larger than 2^63 - 1")
        }
        return product
    }

    /// The largest file `<FILE` reads whole; larger ones (or endless ones such as /dev/urandom)
    /// need a slice, `<FILE[:LEN]`.
    static let maximumFileRead: UInt64 = 1 << 30

    /// Reads `path` from byte `skip`, at most `limit` bytes (to the end when `nil`).
    static func readFile(_ path: String, skip: UInt64, limit: UInt64?) throws(NBDError) -> [UInt8] {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw NBDError(errno: errno, "data: cannot open <\(path)") }
        defer { _ = Glibc.close(descriptor) }
        var bytes: [UInt8] = []
        var skipped: UInt64 = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let wanted: Int
            if skipped < skip {
                wanted = Int(min(UInt64(chunk.count), skip - skipped))
            } else if let limit {
                wanted = Int(min(UInt64(chunk.count), limit - UInt64(bytes.count)))
                if wanted == 0 { break }
            } else {
                wanted = chunk.count
            }
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, wanted) }
            if count < 0 {
                if errno == EINTR { continue }
                throw NBDError(errno: errno, "data: cannot read <\(path)")
            }
            if count == 0 { break }
            if skipped < skip {
                skipped += UInt64(count)
                continue
            }
            bytes.append(contentsOf: chunk[0..<count])
            if limit == nil && UInt64(bytes.count) > maximumFileRead {
                throw NBDError(
                    .invalidArgument,
                    "data: <\(path) is larger than 1 GiB (or endless); take a slice such as <\(path)[:1M]")
            }
        }
        return bytes
    }
}
