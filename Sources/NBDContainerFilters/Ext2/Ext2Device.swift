import CExt2Shim
import Dispatch
import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The image libext2fs opens: CExt2Shim's io_manager calls these callbacks, which read and write
/// the layer below.
///
/// libext2fs is synchronous and the layer below is async, so each callback starts a task for the
/// operation and blocks until it completes. That is safe only because libext2fs is only ever called
/// from ``Ext2Filesystem``'s serial queue, a Dispatch thread: no cooperative-pool thread and no
/// connection thread ever blocks here.
final class Ext2Device: @unchecked Sendable {
    // @unchecked Sendable: `lastError` and `metadataCache` are only touched by callbacks, which run on the filesystem's
    // serial queue; `device` is written once in init.
    let below: AnyBlockBackend
    let size: UInt64
    /// The C callbacks' table; its address is the device name ext2fs_open is given.
    let device: UnsafeMutablePointer<cext2_device>
    /// The error of the last failed callback, which reads better than libext2fs' errno text.
    var lastError: NBDError?
    /// Blocks read while a block-mapped file is mapped (its indirect blocks, read again for each
    /// block looked up), by offset; `nil` otherwise. Writes drop it.
    var metadataCache: [UInt64: [UInt8]]?

    init(below: AnyBlockBackend) {
        self.below = below
        size = below.capabilities.size
        device = .allocate(capacity: 1)
        device.initialize(to: cext2_device())
        device.pointee.context = Unmanaged.passUnretained(self).toOpaque()
        device.pointee.read = { context, offset, buffer, count in
            Ext2Device.from(context).blockingRead(
                at: offset, into: UnsafeMutableRawBufferPointer(start: buffer, count: count))
        }
        device.pointee.write = { context, offset, buffer, count in
            Ext2Device.from(context).blockingWrite(at: offset, UnsafeRawBufferPointer(start: buffer, count: count))
        }
        device.pointee.flush = { context in
            Ext2Device.from(context).blocking { below throws(NBDError) in try await below.flush(flags: []) }
        }
    }

    deinit {
        device.deinitialize(count: 1)
        device.deallocate()
    }

    /// The name under which ext2fs_open reaches this device through `cext2_io_manager()`.
    var name: String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = cext2_device_name(device, &buffer, buffer.count)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func from(_ context: UnsafeMutableRawPointer?) -> Ext2Device {
        Unmanaged<Ext2Device>.fromOpaque(context!).takeUnretainedValue()
    }

    private func blockingRead(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int32 {
        // A corrupt superblock or table can point anywhere: never pass a request past the end below.
        guard offset <= size, UInt64(buffer.count) <= size - offset else {
            lastError = NBDError(
                .invalidArgument,
                "the filesystem refers to \(buffer.count) bytes at offset \(offset), past the end of the image (\(size) bytes): it is truncated or corrupt"
            )
            return EIO
        }
        if let cached = metadataCache?[offset], cached.count == buffer.count {
            buffer.copyBytes(from: cached)
            return 0
        }
        let target = UncheckedBuffer(mutable: buffer)
        let status = blocking { below throws(NBDError) in
            try await below.read(into: target.mutable, at: offset, flags: [])
        }
        if status == 0, metadataCache != nil, buffer.count <= 65536 {
            if metadataCache!.count >= 1024 { metadataCache = [:] }
            metadataCache![offset] = Array(buffer)
        }
        return status
    }

    private func blockingWrite(at offset: UInt64, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard offset <= size, UInt64(data.count) <= size - offset else {
            lastError = NBDError(
                .invalidArgument,
                "the filesystem writes \(data.count) bytes at offset \(offset), past the end of the image (\(size) bytes)"
            )
            return EIO
        }
        if metadataCache != nil { metadataCache = [:] }
        let source = UncheckedBuffer(mutable: UnsafeMutableRawBufferPointer(mutating: data))
        return blocking { below throws(NBDError) in
            try await below.write(UnsafeRawBufferPointer(source.mutable), at: offset, flags: [])
        }
    }

    /// Runs `operation` on the layer below and waits for it; 0, or an errno value for libext2fs.
    private func blocking(_ operation: @escaping @Sendable (AnyBlockBackend) async throws(NBDError) -> Void) -> Int32 {
        let outcome = BlockingOutcome()
        let below = below
        Task {
            let result: NBDError?
            do throws(NBDError) {
                try await operation(below)
                result = nil
            } catch {
                result = error
            }
            outcome.error.withLock { $0 = result }
            outcome.done.signal()
        }
        outcome.done.wait()
        guard let error = outcome.error.withLock({ $0 }) else { return 0 }
        lastError = error
        return Int32(bitPattern: error.code.wireValue)
    }
}

/// A buffer handed to the task that fills or reads it while its owner waits.
private struct UncheckedBuffer: @unchecked Sendable {
    // @unchecked Sendable: the thread that owns the buffer blocks until the task is done with it.
    let mutable: UnsafeMutableRawBufferPointer
}

/// The result of one blocking operation: written by the task before it signals `done`, read after.
/// The lock (a pthread mutex in the thread-sanitizer build) also orders the task's writes into a
/// read buffer before the waiting thread's use of it, in a way ThreadSanitizer sees.
private final class BlockingOutcome: Sendable {
    let done = DispatchSemaphore(value: 0)
    let error = LockedValue<NBDError?>(nil)
}
