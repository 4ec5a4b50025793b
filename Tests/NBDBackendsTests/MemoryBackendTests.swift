import Dispatch
import Foundation
import Glibc
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDBackends

final class MemoryBackendTests: XCTestCase {
    let page = UInt64(MemoryBackendProvider.pageSize)

    private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) | 1 }
    }

    // MARK: - Data

    func testReadWriteRoundTripAcrossPageBoundaries() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let backend = try await export.open(ConnectionInfo())
        let data = pattern(190_000, seed: 7)
        let offset = page - 1000  // spans pages 0, 1, 2 and 3
        try await backend.writeBytes(data, at: offset)

        let readBack = try await backend.readBytes(data.count, at: offset)
        XCTAssertEqual(readBack, data)
        // A read that starts before and ends after the written range sees zeroes around it.
        let wider = try await backend.readBytes(data.count + 2000, at: offset - 1000)
        XCTAssertEqual(Array(wider[0..<1000]), [UInt8](repeating: 0, count: 1000))
        XCTAssertEqual(Array(wider[1000..<(1000 + data.count)]), data)
        XCTAssertEqual(Array(wider[(1000 + data.count)...]), [UInt8](repeating: 0, count: 1000))
        XCTAssertEqual(export.allocatedPageCount, 4)
    }

    func testAllConnectionsShareOneStore() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let first = try await export.open(ConnectionInfo())
        let second = try await export.open(ConnectionInfo())
        try await first.writeString("shared", at: 12345)
        let seen = try await second.readString(6, at: 12345)
        XCTAssertEqual(seen, "shared")
    }

    func testUnwrittenRangesReadAsZeroesAndAllocateNothing() async throws {
        let export = try MemoryBackendProvider(size: 1 << 30)
        let backend = try await export.open(ConnectionInfo())
        let bytes = try await backend.readBytes(300_000, at: 5 * page + 17)
        XCTAssertEqual(bytes, [UInt8](repeating: 0, count: 300_000))
        XCTAssertEqual(export.allocatedPageCount, 0)

        try await backend.writeBytes([9], at: 3 * page + 5)
        XCTAssertEqual(export.allocatedPageCount, 1)
        try await backend.writeBytes([1, 2], at: 8 * page - 1)  // straddles pages 7 and 8
        XCTAssertEqual(export.allocatedPageCount, 3)
        XCTAssertEqual(backend.allocatedPageCount, 3)
        let around = try await backend.readBytes(4, at: 3 * page + 4)
        XCTAssertEqual(around, [0, 9, 0, 0])
    }

    // MARK: - Zero and trim

    func testZeroFreesWholePagesAndClearsPartialPagesInPlace() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeBytes([UInt8](repeating: 0xAB, count: Int(4 * page)), at: 0)
        XCTAssertEqual(export.allocatedPageCount, 4)

        // [page - 50, 3 * page + 50): the tail of page 0, pages 1 and 2 whole, the head of page 3.
        let start = page - 50
        let count = 2 * page + 100
        try await backend.zero(count: count, at: start, flags: [])
        XCTAssertEqual(export.allocatedPageCount, 2, "pages 1 and 2 are freed, pages 0 and 3 keep their data")

        let all = try await backend.readBytes(Int(4 * page), at: 0)
        XCTAssertEqual(all[0..<Int(start)].filter { $0 != 0xAB }.count, 0)
        XCTAssertEqual(all[Int(start)..<Int(start + count)].filter { $0 != 0 }.count, 0)
        XCTAssertEqual(all[Int(start + count)...].filter { $0 != 0xAB }.count, 0)
    }

    func testZeroOfAHoleAllocatesNothing() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let backend = try await export.open(ConnectionInfo())
        try await backend.zero(count: 3 * page + 7, at: 100, flags: [.noHole])
        try await backend.zero(count: 10, at: 5 * page + 3, flags: [.fastZero])
        XCTAssertEqual(export.allocatedPageCount, 0)
    }

    func testTrimReleasesPagesAndTheRangeReadsAsZeroes() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeBytes(pattern(Int(3 * page), seed: 3), at: 0)
        try await backend.trim(count: 3 * page, at: 0, flags: [.fua])
        XCTAssertEqual(export.allocatedPageCount, 0)
        let bytes = try await backend.readBytes(Int(3 * page), at: 0)
        XCTAssertEqual(bytes.filter { $0 != 0 }.count, 0)
        // The freed pages can be written again.
        try await backend.writeString("again", at: page + 1)
        let again = try await backend.readString(5, at: page + 1)
        XCTAssertEqual(again, "again")
        XCTAssertEqual(export.allocatedPageCount, 1)
    }

    // MARK: - Extents

    func testExtentsReportHolesAndDataAndMergeAdjacentPages() async throws {
        let export = try MemoryBackendProvider(size: 16 * page)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeBytes(pattern(Int(2 * page), seed: 1), at: 2 * page)  // pages 2 and 3
        try await backend.writeBytes([5], at: 7 * page + 300)  // page 7

        let whole = try await backend.extents(count: 16 * page, at: 0, flags: [])
        XCTAssertEqual(whole, [.hole(2 * page), .data(2 * page), .hole(3 * page), .data(page), .hole(8 * page)])

        // Starting and ending inside pages: the first and last extents are cut at the request.
        let inside = try await backend.extents(count: 3 * page, at: page + 100, flags: [])
        XCTAssertEqual(inside, [.hole(page - 100), .data(2 * page), .hole(100)])

        let one = try await backend.extents(count: 16 * page, at: 2 * page + 5, flags: [.requestOne])
        XCTAssertEqual(one, [.data(2 * page - 5)])

        XCTAssertEqual(whole.reduce(0) { $0 + $1.length }, 16 * page)
    }

    func testExtentsAfterZeroShowTheFreedPagesAsAHole() async throws {
        let export = try MemoryBackendProvider(size: 8 * page)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeBytes(pattern(Int(8 * page), seed: 2), at: 0)
        try await backend.zero(count: 2 * page, at: 3 * page, flags: [])
        let extents = try await backend.extents(count: 8 * page, at: 0, flags: [])
        XCTAssertEqual(extents, [.data(3 * page), .hole(2 * page), .data(3 * page)])
    }

    // MARK: - Size

    func testHugeExportAcceptsWritesNearTheEnd() async throws {
        let size: UInt64 = 1 << 62
        let export = try MemoryBackendProvider(size: size)
        let backend = try await export.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.size, size)

        let tail = pattern(10_000, seed: 9)
        try await backend.writeBytes(tail, at: size - UInt64(tail.count))
        try await backend.writeString("head", at: 0)
        let readTail = try await backend.readBytes(tail.count, at: size - UInt64(tail.count))
        XCTAssertEqual(readTail, tail)
        let head = try await backend.readString(4, at: 0)
        XCTAssertEqual(head, "head")
        XCTAssertEqual(export.allocatedPageCount, 2)
        // Two paths of five small tables, not a table proportional to 2^62 bytes.
        XCTAssertLessThan(export.allocatedBytes, 1 << 20)

        // An extent query over a vast empty range skips the missing tables.
        let extents = try await backend.extents(count: 1 << 61, at: 1 << 40, flags: [])
        XCTAssertEqual(extents, [.hole(1 << 61)])
        let end = try await backend.extents(count: 3 * page, at: size - 3 * page, flags: [])
        XCTAssertEqual(end, [.hole(2 * page), .data(page)])
    }

    func testTheLargestNBDSizeIsAcceptedAndLargerSizesAreRejected() async throws {
        let largest = UInt64(Int64.max)
        let export = try MemoryBackendProvider(size: largest)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeBytes([0x5A], at: largest - 1)
        let last = try await backend.readBytes(1, at: largest - 1)
        XCTAssertEqual(last, [0x5A])

        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                try MemoryBackendProvider(size: largest + 1)
            }, code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("2^63 - 1") ?? false, "\(String(describing: error))")

        let empty = try MemoryBackendProvider(size: 0)
        XCTAssertEqual(empty.size, 0)
    }

    func testWriting256MiBIntoA1TiBExportTakesAbout256MiB() async throws {
        let residentBefore = Self.residentBytes()
        let export = try MemoryBackendProvider(size: 1 << 40)
        let backend = try await export.open(ConnectionInfo())
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        let start: UInt64 = (1 << 40) - (512 << 20)
        for index in 0..<64 {
            try await backend.write(UnsafeRawBufferPointer(buffer), at: start + UInt64(index * chunk), flags: [])
        }
        XCTAssertEqual(export.allocatedPageCount, (256 << 20) / MemoryBackendProvider.pageSize)
        XCTAssertLessThan(export.allocatedBytes, 300 << 20)
        if let residentBefore, let residentAfter = Self.residentBytes() {
            XCTAssertLessThan(residentAfter - residentBefore, 300 << 20, "resident memory grew too much")
        }
        let sample = try await backend.readBytes(3, at: start + (256 << 20) - 1)
        XCTAssertEqual(sample, [0xEE, 0, 0])
    }

    func testScatteredWritesCostAPageAndAFewTablesEach() async throws {
        let export = try MemoryBackendProvider(size: 1 << 40)
        let backend = try await export.open(ConnectionInfo())
        for index in 0..<256 {
            try await backend.writeBytes([1], at: UInt64(index) << 32)
        }
        XCTAssertEqual(export.allocatedPageCount, 256)
        // 1 TiB is 2^24 pages: three levels of 1024-slot tables. Writes 2^16 pages apart each need
        // a page and a leaf table; a middle table covers 2^20 pages, 16 of the writes.
        let tables = 1 + 16 + 256
        XCTAssertEqual(export.allocatedBytes, 256 * MemoryBackendProvider.pageSize + tables * (8 << 10))
    }

    // MARK: - Concurrency

    func testConcurrentWritersOnManyConnectionsLoseNoWrites() async throws {
        let export = try MemoryBackendProvider(size: 64 << 20)
        let tasks = 32
        let region = 50_000  // not page-aligned, so neighbouring tasks share pages
        let rounds = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    let backend = try await export.open(ConnectionInfo())
                    let base = UInt64(task * region)
                    for round in 0..<rounds {
                        let bytes = [UInt8](repeating: UInt8(task + 1), count: 1000)
                        try await backend.writeBytes(bytes, at: base + UInt64(round * 1000))
                    }
                    // Fill the rest of the region in one write spanning page boundaries.
                    let rest = [UInt8](repeating: UInt8(task + 1), count: region - rounds * 1000)
                    try await backend.writeBytes(rest, at: base + UInt64(rounds * 1000))
                }
            }
            try await group.waitForAll()
        }
        let backend = try await export.open(ConnectionInfo())
        let all = try await backend.readBytes(tasks * region, at: 0)
        for task in 0..<tasks {
            let slice = all[(task * region)..<((task + 1) * region)]
            XCTAssertEqual(slice.filter { $0 != UInt8(task + 1) }.count, 0, "task \(task) lost writes")
        }
    }

    /// Four OS threads sweep the same fresh pages in the same order, each writing its own quarter of
    /// every page, so they keep racing to install the same page; after each sweep the pages are
    /// checked and freed, and the threads race again. A lost race that dropped the winner's page (or
    /// the loser's bytes) would leave a quarter without its writer's value.
    func testThreadsRacingToAllocateTheSamePagesLoseNoWrites() async throws {
        let pages = 256
        let threads = 4
        let sweeps = 40
        let pageSize = MemoryBackendProvider.pageSize
        let quarter = pageSize / threads
        let export = try MemoryBackendProvider(size: UInt64(pages * pageSize))
        let store = export.store
        // Sweep n starts when `started` reaches threads * n: a spinning barrier keeps the writers in
        // step so they meet on the same fresh page.
        let started = Atomic<Int>(0)
        let finished = Atomic<Int>(0)

        let lost = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            Thread.detachNewThread {
                for thread in 0..<threads {
                    Thread.detachNewThread {
                        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: quarter, alignment: 64)
                        defer { source.deallocate() }
                        source.initializeMemory(as: UInt8.self, repeating: UInt8(thread + 1))
                        for sweep in 1...sweeps {
                            // Wait for the checker to release this sweep, then for every writer.
                            while started.load(ordering: .acquiring) < (sweep - 1) * (threads + 1) + 1 { sched_yield() }
                            started.wrappingAdd(1, ordering: .acquiringAndReleasing)
                            var spins = 0
                            while started.load(ordering: .acquiring) < sweep * (threads + 1) {
                                spins += 1
                                if spins > 10_000 { sched_yield() }  // a writer was not scheduled yet
                            }
                            for page in 0..<pages {
                                try? store.write(
                                    UnsafeRawBufferPointer(source), at: UInt64(page * pageSize + thread * quarter))
                            }
                            finished.wrappingAdd(1, ordering: .acquiringAndReleasing)
                        }
                    }
                }
                // The checker: release a sweep, wait for it, check every quarter, free every page.
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pages * pageSize, alignment: 64)
                defer { buffer.deallocate() }
                var lost = 0
                for sweep in 1...sweeps {
                    started.wrappingAdd(1, ordering: .acquiringAndReleasing)
                    while finished.load(ordering: .acquiring) < sweep * threads { sched_yield() }
                    store.read(into: buffer, at: 0)
                    for page in 0..<pages {
                        for thread in 0..<threads {
                            let start = buffer.baseAddress! + page * pageSize + thread * quarter
                            if start.load(as: UInt8.self) != UInt8(thread + 1)
                                || memchr(start, 0, quarter) != nil
                            {
                                lost += 1
                            }
                        }
                    }
                    store.zero(count: UInt64(pages * pageSize), at: 0)
                }
                continuation.resume(returning: lost)
            }
        }
        XCTAssertEqual(lost, 0, "quarters of pages lost their writes")
        XCTAssertEqual(export.allocatedPageCount, 0)
    }

    /// Pages are freed by trims on one thread while another thread copies from them. glibc's
    /// `M_PERTURB` fills every freed block with 0xEE at once, so a read that copied from a page after
    /// it was freed sees 0xEE, which no request writes; a page reused for another offset shows that
    /// offset's value. Two OS threads (not tasks, which would not interleave: these calls never
    /// suspend) make the race real on any machine with two cores.
    func testPagesFreedDuringConcurrentReadsNeverLeakFreedOrForeignData() async throws {
        let freedFill: Int32 = 0xEE
        let perturbing = Self.mallopt(Self.mPerturb, freedFill)
        defer { _ = Self.mallopt(Self.mPerturb, 0) }
        XCTAssertTrue(perturbing || Self.mallopt == nil, "mallopt(M_PERTURB) failed")

        let pages = 8
        let pageSize = MemoryBackendProvider.pageSize
        let export = try MemoryBackendProvider(size: UInt64(pages * pageSize))
        let store = export.store
        let rounds = 40_000
        let stop = Atomic<Bool>(false)

        let wrong = await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            Thread.detachNewThread {
                let churnDone = DispatchSemaphore(value: 0)
                Thread.detachNewThread {
                    // Write each page with its own value and free it again, until the reader is done.
                    let source = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
                    defer { source.deallocate() }
                    var round = 0
                    while !stop.load(ordering: .relaxed) {
                        let index = round % pages
                        source.initializeMemory(as: UInt8.self, repeating: UInt8(index + 1))
                        try? store.write(UnsafeRawBufferPointer(source), at: UInt64(index * pageSize))
                        store.zero(count: UInt64(pageSize), at: UInt64(index * pageSize))
                        round += 1
                    }
                    churnDone.signal()
                }
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pages * pageSize, alignment: 64)
                defer { buffer.deallocate() }
                var wrong = 0
                for _ in 0..<rounds {
                    store.read(into: buffer, at: 0)
                    for index in 0..<pages {
                        let start = buffer.baseAddress! + index * pageSize
                        let first = start.load(as: UInt8.self)
                        let last = start.load(fromByteOffset: pageSize - 1, as: UInt8.self)
                        // Page `index` may hold only its own value or zeroes.
                        if memchr(start, freedFill, pageSize) != nil
                            || (first != 0 && Int(first) != index + 1) || (last != 0 && Int(last) != index + 1)
                        {
                            wrong += 1
                        }
                    }
                }
                stop.store(true, ordering: .relaxed)
                churnDone.waitOrFail("the churning thread to stop")
                continuation.resume(returning: wrong)
            }
        }
        XCTAssertEqual(wrong, 0, "a read saw bytes of a freed or reused page")
        XCTAssertEqual(export.allocatedPageCount, 0)
    }

    /// `M_PERTURB` from `<malloc.h>`.
    private static let mPerturb: Int32 = -6

    private typealias MalloptFunction = @convention(c) @Sendable (Int32, Int32) -> Int32

    /// glibc's `mallopt`, which the Glibc module does not export; `nil` on other C libraries.
    private static let mallopt: MalloptFunction? = {
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
        return unsafeBitCast(address, to: MalloptFunction.self)
    }()

    private static func mallopt(_ option: Int32, _ value: Int32) -> Bool {
        guard let mallopt else { return false }
        return mallopt(option, value) == 1
    }

    // MARK: - Capabilities

    func testCapabilitiesAdvertiseMultiConnNativeFUAAndExtents() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let caps = try await export.open(ConnectionInfo()).capabilities
        XCTAssertEqual(caps.size, 1 << 20)
        XCTAssertTrue(caps.isWritable)
        XCTAssertTrue(caps.canFlush)
        XCTAssertEqual(caps.fua, .native)
        XCTAssertTrue(caps.canTrim)
        XCTAssertTrue(caps.canZero)
        XCTAssertTrue(caps.canFastZero)
        XCTAssertEqual(caps.cache, .native, "as nbdkit's memory plugin: nothing to prefetch")
        XCTAssertTrue(caps.canExtents)
        XCTAssertTrue(caps.canMultiConn)
        XCTAssertEqual(caps.slowOperations, [])
        XCTAssertEqual(caps.blockSize, .default)

        let readOnly = try await export.open(ConnectionInfo(isReadOnly: true)).capabilities
        XCTAssertFalse(readOnly.isWritable)
        XCTAssertEqual(readOnly.fua, FUASupport.none)
        XCTAssertTrue(readOnly.canMultiConn)
    }

    func testFlushAndFUAWriteSucceed() async throws {
        let export = try MemoryBackendProvider(size: 1 << 20)
        let backend = try await export.open(ConnectionInfo())
        try await backend.writeString("durable", at: 10, flags: [.fua])
        try await backend.flush(flags: [])
        let text = try await backend.readString(7, at: 10)
        XCTAssertEqual(text, "durable")
    }

    /// The process's resident set size from /proc/self/statm, or nil where it is not available.
    static func residentBytes() -> Int? {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
