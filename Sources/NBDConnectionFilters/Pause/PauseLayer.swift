import NBDCore

/// nbdkit's pause filter: `nbd-serve --filter=pause memory 1G pause-control=/tmp/ctl` holds every
/// request back while paused through the control socket (see ``PauseControlSocket``), for example
/// while a snapshot of the storage below is taken.
public struct PauseLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The gate every connection's requests pass.
    public let gate: PauseGate
    /// The control socket, or `nil` when the gate is driven in code.
    public let control: PauseControlSocket?

    /// Creates the layer over `gate`, with an optional control socket.
    public init(gate: PauseGate = PauseGate(), control: PauseControlSocket? = nil) {
        self.gate = gate
        self.control = control
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(PauseFilter(wrapping: next, gate: gate))
    }

    /// Closes the control socket and releases held requests.
    public func shutdown() async {
        control?.stop()
        gate.resume()
    }
}

extension PauseLayer: ConfigurableFilterLayer {
    public static var filterName: String { "pause" }
    public static var summary: String {
        "hold requests while paused: send p (answer P when idle) or r (answer R) to a control socket"
    }
    public static var parameters: [ParameterDescription] {
        [ParameterDescription("pause-control", "the Unix-domain socket to create for p/r commands", required: true)]
    }

    /// Creates the layer and its control socket from `pause-control=`.
    public init(parameters: ParameterValues) throws(NBDError) {
        let gate = PauseGate()
        let path = try parameters.required("pause-control", example: "/tmp/pause.sock")
        self.init(gate: gate, control: try PauseControlSocket(path: path, gate: gate))
    }
}
