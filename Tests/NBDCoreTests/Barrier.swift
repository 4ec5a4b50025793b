/// Lets tasks wait until a number of them have arrived, or until the test opens it: deterministic
/// stepping for concurrency tests, without sleeping.
actor Gate {
    private var arrived = 0
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var arrivalWatchers: [(Int, CheckedContinuation<Void, Never>)] = []
    private let opensAfter: Int?

    /// A gate that opens by itself once `opensAfter` tasks arrived (a barrier), or only by ``open()``.
    init(opensAfter: Int? = nil) {
        self.opensAfter = opensAfter
    }

    /// Waits until the gate is open.
    func pass() async {
        arrived += 1
        for (count, watcher) in arrivalWatchers where arrived >= count { watcher.resume() }
        arrivalWatchers.removeAll { arrived >= $0.0 }
        if let opensAfter, arrived >= opensAfter { open() }
        guard !isOpen else { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Returns once `count` tasks have arrived at the gate.
    func waitForArrivals(_ count: Int) async {
        guard arrived < count else { return }
        await withCheckedContinuation { arrivalWatchers.append((count, $0)) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }

    var arrivals: Int { arrived }
}
