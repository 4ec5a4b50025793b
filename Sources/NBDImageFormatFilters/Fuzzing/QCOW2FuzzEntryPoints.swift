import Dispatch
import NBDCore

/// The entry point of the libFuzzer target `Fuzz/QCOW2` (see `Fuzz/run.sh`) and of its corpus
/// replay in `swift test`: arbitrary bytes are opened as a qcow2 file, and when the header and L1
/// table pass, a few reads and block status requests go through the tables.
///
/// Invariants checked on every input, beyond "does not crash": a refusal or a failed request is an
/// `NBDError` with a message; block status covers its request exactly (at most, with `REQ_ONE`)
/// with no empty extent; a read of an unallocated or zero cluster reads zeroes.
package enum QCOW2FuzzEntryPoints {
    /// Opens `data` as an image and reads through it.
    package static func image(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        // The decoder is async (it reads a layer below); this one never suspends, so waiting on a
        // semaphore from the fuzzer's own thread is safe.
        let done = DispatchSemaphore(value: 0)
        Task {
            await exercise(BytesBackend(bytes))
            done.signal()
        }
        done.wait()
    }

    private static func exercise(_ file: BytesBackend) async {
        let image: QCOW2Image
        do throws(NBDError) {
            image = try await QCOW2Image.open(file)
        } catch {
            precondition(!error.message.isEmpty)
            return
        }
        let size = image.header.virtualSize
        guard size > 0 else { return }
        let clusterSize = image.header.clusterSize
        // A few places: the start, the second cluster, somewhere in the middle and the end.
        let offsets = [0, min(clusterSize, size - 1), size / 2, size - 1]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 16)
        defer { buffer.deallocate() }
        for offset in offsets {
            let count = UInt64(min(UInt64(buffer.count), size - offset))
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(count)])
            var readsAsZero = false
            do throws(NBDError) {
                let extents = try await image.extents(count: count, at: offset, requestOne: false, from: file)
                precondition(!extents.isEmpty && extents.allSatisfy { $0.length > 0 })
                precondition(extents.reduce(0) { $0 + $1.length } == count, "block status does not cover the request")
                readsAsZero = extents.count == 1 && extents[0].flags.contains(.zero)
                let one = try await image.extents(count: count, at: offset, requestOne: true, from: file)
                precondition(one.count == 1 && one[0].length <= count)
            } catch {
                precondition(!error.message.isEmpty)
            }
            do throws(NBDError) {
                try await image.read(into: target, at: offset, from: file)
                precondition(!readsAsZero || target.allSatisfy { $0 == 0 }, "a hole read as non-zero")
            } catch {
                precondition(!error.message.isEmpty)
            }
        }
    }
}
