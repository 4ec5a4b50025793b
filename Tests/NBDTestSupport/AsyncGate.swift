import XCTest

/// Lets tasks wait until a number of them have arrived, or until the test opens it: deterministic
/// stepping for concurrency tests, without sleeping.
///
/// Every wait is bounded by ``TestWait/limit``: a gate that never opens because the code under test
/// is broken fails the test with a message naming the gate and lets it go on, instead of hanging.
public actor AsyncGate {
    private var arrived = 0
    private var isOpen = false
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var arrivalWatchers: [Int: (count: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var nextWaiter = 0
    private let opensAfter: Int?
    private let name: String

    /// A gate that opens by itself once `opensAfter` tasks arrived (a barrier), or only by ``open()``.
    public init(_ name: String = "gate", opensAfter: Int? = nil) {
        self.name = name
        self.opensAfter = opensAfter
    }

    /// Waits until the gate is open (at most ``TestWait/limit``, then fails the test and returns).
    public func pass(file: StaticString = #filePath, line: UInt = #line) async {
        arrived += 1
        for (id, watcher) in arrivalWatchers where arrived >= watcher.count {
            arrivalWatchers[id] = nil
            watcher.continuation.resume()
        }
        if let opensAfter, arrived >= opensAfter { open() }
        guard !isOpen else { return }
        let id = takeWaiterID()
        await bounded(id, "\(name) to open", file: file, line: line) { waiters[id] = $0 }
    }

    /// Returns once `count` tasks have arrived at the gate (at most ``TestWait/limit``, then fails
    /// the test and returns).
    public func waitForArrivals(_ count: Int, file: StaticString = #filePath, line: UInt = #line) async {
        guard arrived < count else { return }
        let id = takeWaiterID()
        await bounded(id, "\(count) arrivals at \(name) (\(arrived) so far)", file: file, line: line) {
            arrivalWatchers[id] = (count, $0)
        }
    }

    /// Opens the gate: every task waiting in ``pass()`` goes on, and later ones pass at once.
    public func open() {
        isOpen = true
        let all = waiters.values
        waiters = [:]
        for waiter in all { waiter.resume() }
    }

    /// How many tasks have arrived.
    public var arrivals: Int { arrived }

    private func takeWaiterID() -> Int {
        nextWaiter += 1
        return nextWaiter
    }

    private func bounded(
        _ id: Int, _ what: String, file: StaticString, line: UInt,
        register: (CheckedContinuation<Void, Never>) -> Void
    ) async {
        let timer = Task { [weak self] in
            try await Task.sleep(for: TestWait.limit)
            await self?.expire(id, what, file: file, line: line)
        }
        await withCheckedContinuation { register($0) }
        timer.cancel()
    }

    private func expire(_ id: Int, _ what: String, file: StaticString, line: UInt) {
        let continuation = waiters.removeValue(forKey: id) ?? arrivalWatchers.removeValue(forKey: id)?.continuation
        guard let continuation else { return }
        XCTFail("timed out after \(TestWait.limit) waiting for \(what)", file: file, line: line)
        continuation.resume()
    }
}
