import Dispatch
import NBDCore
import Synchronization

/// nbdkit's exitwhen filter: asks the server to shut down gracefully (refuse new clients, let the
/// connected ones finish) once any of its events happens: a file created or deleted, a pipe closed,
/// a process exited, or a script exiting with status 88.
///
/// Events are checked when the server attaches the stack (so an event that already happened stops
/// the server at once), when a client connects or disconnects, and every ``pollInterval``. Checks
/// run on a Dispatch queue of the filter's own, never on a connection's thread.
public final class ExitWhenLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The events, any of which stops the server.
    public let events: [ExitEvent]
    /// How often events are checked besides client connects and disconnects.
    public let pollInterval: Duration
    /// Receives a script's failures (status 1 to 87), which are reported, not events.
    let report: @Sendable (String) -> Void

    private let control = ControlSlot()
    private let queue = DispatchQueue(label: "nbd-exitwhen")
    private let state = LockedValue<(timer: TimerBox?, triggered: Bool)>((nil, false))

    // @unchecked Sendable: Dispatch sources may be resumed and cancelled from any thread.
    private final class TimerBox: @unchecked Sendable {
        let timer: any DispatchSourceTimer
        init(_ timer: any DispatchSourceTimer) { self.timer = timer }
    }

    /// Creates the layer; nbdkit polls every 60 seconds.
    public init(
        events: [ExitEvent], pollInterval: Duration = .seconds(60),
        report: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.events = events
        self.pollInterval = pollInterval
        self.report = report
    }

    /// Whether an event was seen and the shutdown requested.
    public var hasTriggered: Bool { state.withLock { $0.triggered } }

    /// Checks the events now and starts polling.
    public func attach(_ control: ServerControl) {
        self.control.attach(control)
        guard !events.isEmpty else { return }
        let timer = DispatchSource.makeTimerSource(queue: queue)
        let (seconds, attoseconds) = pollInterval.components
        let nanoseconds = max(1_000_000, Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        timer.schedule(deadline: .now(), repeating: .nanoseconds(nanoseconds))
        // A strong capture: cancelling the timer in `shutdown()` releases the handler and the cycle.
        timer.setEventHandler { [self] in checkOnQueue() }
        let box = TimerBox(timer)
        state.withLock { $0.timer = box }
        timer.resume()
    }

    /// Checks the events soon, off the caller's thread.
    public func checkSoon() {
        guard !events.isEmpty else { return }
        queue.async { [self] in checkOnQueue() }
    }

    private func checkOnQueue() {
        guard !hasTriggered else { return }
        for event in events where event.hasHappened(report: report) {
            let first = state.withLock { state -> Bool in
                defer { state.triggered = true }
                return !state.triggered
            }
            if first { control.current.requestShutdown() }
            return
        }
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        checkSoon()
        return AnyBlockBackend(CloseNotifyingFilter(next: next) { [self] in checkSoon() })
    }

    /// Stops polling.
    public func shutdown() async {
        let box = state.withLock { state -> TimerBox? in
            defer { state.timer = nil }
            return state.timer
        }
        box?.timer.cancel()
    }
}

extension ExitWhenLayer: ConfigurableFilterLayer {
    public static var filterName: String { "exitwhen" }
    public static var summary: String {
        "shut the server down gracefully when a file appears or goes, a pipe closes, a process exits, or a script says so"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("exit-when-file-created", "stop when this file exists", repeatable: true),
            ParameterDescription("exit-when-file-deleted", "stop when this file does not exist", repeatable: true),
            ParameterDescription(
                "exit-when-pipe-closed", "stop when the pipe whose read end is this descriptor closes", repeatable: true
            ),
            ParameterDescription("exit-when-process-exits", "stop when this process ID exits", repeatable: true),
            ParameterDescription(
                "exit-when-script", "stop when this shell command exits with 88 (0: not yet; 1-87: error logged)",
                repeatable: true),
            ParameterDescription("exit-when-poll", "how often to check while idle, in seconds", default: "60"),
        ]
    }

    /// Creates the layer from its parameters, keeping their command-line order.
    public convenience init(parameters: ParameterValues) throws(NBDError) {
        var events: [ExitEvent] = []
        for entry in parameters {
            switch entry.key {
            case "exit-when-file-created": events.append(.fileCreated(entry.value))
            case "exit-when-file-deleted": events.append(.fileDeleted(entry.value))
            case "exit-when-pipe-closed":
                guard let descriptor = Int32(entry.value), descriptor >= 0 else {
                    throw NBDError(
                        .invalidArgument, "exit-when-pipe-closed=\(entry.value): expected a file descriptor number")
                }
                events.append(.pipeClosed(descriptor))
            case "exit-when-process-exits":
                guard let pid = Int32(entry.value), pid > 0 else {
                    throw NBDError(
                        .invalidArgument, "exit-when-process-exits=\(entry.value): expected a process ID above 0")
                }
                events.append(.processExits(pid))
            case "exit-when-script": events.append(.script(entry.value))
            default: break
            }
        }
        let poll = try parameters.duration("exit-when-poll") ?? .seconds(60)
        guard poll > .zero else {
            throw NBDError(
                .invalidArgument, "exit-when-poll=\(parameters["exit-when-poll"] ?? ""): expected a duration above 0")
        }
        self.init(events: events, pollInterval: poll, report: { printToStandardError($0) })
    }
}
