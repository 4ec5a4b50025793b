import NBDCore
import Synchronization

/// The write payloads of one connection's slow and suspending requests, reused from request to
/// request instead of allocated for each.
///
/// A request that runs off the connection's loop (the `nbd` backend's writes, slow writes on the
/// pool) needs its payload in memory of its own until it completes, because the loop reads the next
/// request into the receive buffer meanwhile. A fresh 1 MiB `malloc` per request is not free: glibc
/// serves it from a heap that it trims again when the buffer is freed, so every request faulted in
/// 256 zeroed pages (about a tenth of the `nbd` backend's CPU per 1 MiB write, issue #25). nbdkit
/// keeps a buffer per thread for the same reason. Here the connection takes a buffer and the thread
/// that completes the request (the NBD client's reply reader, a pool thread) gives it back.
///
/// Payloads under ``smallestPooled`` come straight from `malloc` (its per-thread caches serve them
/// without faults); larger ones are rounded up to a power of two so that requests of nearby sizes
/// share buffers. At most ``retainedLimit`` bytes are kept; what does not fit is freed.
package final class PayloadPool: Sendable {
    /// A buffer handed out, with the capacity it was allocated with.
    package struct Buffer: @unchecked Sendable {
        // @unchecked Sendable: handed from the connection task to exactly one request, which gives
        // it back; nothing else touches it.
        package let storage: UnsafeMutableRawBufferPointer
        /// The payload: the first `count` bytes of the storage.
        package let count: Int

        /// The payload bytes.
        package var payload: UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])
        }
    }

    /// Payloads at least this large are pooled.
    package static var smallestPooled: Int { 128 << 10 }

    /// Buffers larger than this are never kept (a rare huge write must not pin its memory).
    package static var largestPooled: Int { 4 << 20 }

    /// Counts every payload buffer allocated by any pool (a test hook: reuse shows as no increase).
    package static let allocations = Atomic<Int>(0)

    /// The most bytes of free buffers this pool keeps.
    package let retainedLimit: Int
    private struct Free {
        var buffers: [Buffer] = []
        var bytes = 0
    }
    private let free = LockedValue(Free())

    /// The server's payload budget, which charges the free buffers kept here (so that memory kept
    /// for reuse counts like memory in use) and takes them back when a connection must wait.
    let budget: PayloadBudget?

    /// A pool that keeps at most `retainedLimit` bytes of free buffers, charged to `budget`.
    init(retainedLimit: Int, budget: PayloadBudget? = nil) {
        self.retainedLimit = retainedLimit
        self.budget = budget.flatMap { $0.isUnlimited ? nil : $0 }
        self.budget?.register(self)
    }

    /// A pool that keeps at most `retainedLimit` bytes of free buffers.
    package convenience init(retainedLimit: Int) {
        self.init(retainedLimit: retainedLimit, budget: nil)
    }

    deinit {
        budget?.unregister(self)
        freeRetained()
    }

    /// Frees every kept buffer and gives back its charge.
    func freeRetained() {
        let taken = free.withLock { free -> Free in
            defer { free = Free() }
            return free
        }
        for buffer in taken.buffers { buffer.storage.deallocate() }
        budget?.release(taken.bytes)
    }

    /// A buffer for a payload of `count` bytes (its contents are undefined).
    package func take(_ count: Int) -> Buffer {
        guard count > 0 else { return Buffer(storage: UnsafeMutableRawBufferPointer(start: nil, count: 0), count: 0) }
        guard count >= Self.smallestPooled, count <= Self.largestPooled else {
            return Buffer(storage: allocate(count), count: count)
        }
        let reused = free.withLock { free -> Buffer? in
            // The most recently returned buffer that fits: the one most likely still in the caches.
            guard let index = free.buffers.lastIndex(where: { $0.storage.count >= count }) else { return nil }
            free.bytes -= free.buffers[index].storage.count
            return free.buffers.remove(at: index)
        }
        if let reused {
            // Its charge as a kept buffer ends; the request that takes it is charged on its own.
            budget?.release(reused.storage.count)
            return Buffer(storage: reused.storage, count: count)
        }
        return Buffer(storage: allocate(Self.roundedUp(count)), count: count)
    }

    /// Gives `buffer` back once its request is done with it.
    package func give(_ buffer: Buffer) {
        let storage = buffer.storage
        guard storage.count > 0 else { return }
        guard storage.count >= Self.smallestPooled, storage.count <= Self.largestPooled else {
            storage.deallocate()
            return
        }
        let kept = free.withLock { free -> Bool in
            guard free.bytes + storage.count <= retainedLimit else { return false }
            guard budget?.tryRetain(storage.count) ?? true else { return false }
            free.bytes += storage.count
            free.buffers.append(buffer)
            return true
        }
        if !kept { storage.deallocate() }
    }

    /// The bytes of free buffers kept now.
    package var retainedBytes: Int { free.withLock { $0.bytes } }

    private func allocate(_ count: Int) -> UnsafeMutableRawBufferPointer {
        Self.allocations.add(1, ordering: .relaxed)
        return .allocate(byteCount: count, alignment: 16)
    }

    /// The next power of two at or above `count` (at most ``largestPooled``).
    private static func roundedUp(_ count: Int) -> Int {
        min(largestPooled, 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount))
    }
}
