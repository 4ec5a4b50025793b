import NBDCore

/// What the sh and eval backends share once their parameters are read: a running ``ScriptHost``
/// and its thread model. Answers the handshake and opens one ``ScriptBackend`` per connection the
/// way nbdkit's sh plugin does: `preconnect` when a client connects, `list_exports` for
/// `NBD_OPT_LIST`, `default_export` for the export `""`, then `open`, `get_size` and the `can_*`
/// methods, each a process.
struct ScriptBackendProvider: BackendProvider {
    let host: ScriptHost
    let threadModel: ThreadModel
    /// The one lock every call takes under a serialising thread model.
    let sharedGate: ScriptGate?

    /// Finishes starting: `config_complete`, `thread_model`, `get_ready`, `after_fork`, in
    /// nbdkit's order. The caller ran `load` and `config` already.
    static func start(host: ScriptHost) async throws(NBDError) -> ScriptBackendProvider {
        do throws(NBDError) {
            try await host.expectSuccess("config_complete")
            var model = ThreadModel.serializeAllRequests
            if case .ok(let printed) = try await host.call("thread_model") {
                model = ThreadModel(printed: String(decoding: printed, as: UTF8.self))
            }
            try await host.expectSuccess("get_ready")
            try await host.expectSuccess("after_fork")
            host.logger?("\(host.displayName): thread model \(model.rawValue)")
            let gate: ScriptGate? =
                switch model {
                case .serializeConnections, .serializeAllRequests: ScriptGate()
                case .serializeRequests, .parallel: nil
                }
            return ScriptBackendProvider(host: host, threadModel: model, sharedGate: gate)
        } catch {
            host.directory.remove()
            throw error
        }
    }

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> ScriptBackend {
        let readOnly = connection.isReadOnly ? "true" : "false"
        let gate = threadModel == .serializeRequests ? ScriptGate() : sharedGate
        // The server resolved "" through defaultExport(_:) already; `open` gets what it chose.
        let handle: String
        switch try await host.call("open", [readOnly, connection.exportName, tlsArgument(connection)], gate: gate) {
        case .ok(let printed): handle = String(decoding: printed, as: UTF8.self).droppingFinalNewline
        case .missing: handle = ""
        case .no: throw NBDError(.ioError, "\(host.displayName): open exited with status 3 (false)")
        }
        do {
            return try await backend(handle: handle, readOnly: connection.isReadOnly, gate: gate)
        } catch {
            _ = try? await host.call("close", [handle], gate: gate)
            throw error
        }
    }

    /// Runs `unload` and removes `$tmpdir`.
    func shutdown() async {
        await host.shutdown()
    }

    /// `preconnect READONLY`, when a client connects; failing drops the client.
    func preconnect(_ connection: ConnectionInfo) async throws(NBDError) {
        try await host.expectSuccess("preconnect", [readOnlyArgument(connection)], gate: sharedGate)
    }

    /// `list_exports READONLY TLS` in any of its output forms; without the method, the default
    /// export alone, as nbdkit lists it.
    func listExports(_ connection: ConnectionInfo) async throws(NBDError) -> [ExportEntry] {
        guard host.defines("list_exports") else { return [ExportEntry(name: try await defaultExport(connection))] }
        switch try await host.call("list_exports", [readOnlyArgument(connection), tlsArgument(connection)], gate: sharedGate) {
        case .ok(let printed): return ExportListOutput.parse(printed)
        case .missing: return [ExportEntry(name: try await defaultExport(connection))]
        case .no: throw NBDError(.ioError, "\(host.displayName): list_exports exited with status 3 (false)")
        }
    }

    /// The first name `default_export READONLY TLS` lists (in any of list_exports' forms), or `""`.
    func defaultExport(_ connection: ConnectionInfo) async throws(NBDError) -> String {
        guard host.defines("default_export") else { return "" }
        switch try await host.call("default_export", [readOnlyArgument(connection), tlsArgument(connection)], gate: sharedGate) {
        case .ok(let printed): return ExportListOutput.parse(printed).first?.name ?? ""
        case .missing: return ""
        case .no: throw NBDError(.ioError, "\(host.displayName): default_export exited with status 3 (false)")
        }
    }

    private func readOnlyArgument(_ connection: ConnectionInfo) -> String { connection.isReadOnly ? "true" : "false" }
    private func tlsArgument(_ connection: ConnectionInfo) -> String { connection.isTLS ? "true" : "false" }

    /// Asks the script about the export: size, the `can_*` and `is_rotational` methods, block sizes.
    private func backend(handle: String, readOnly: Bool, gate: ScriptGate?) async throws(NBDError) -> ScriptBackend {
        let sizeText: String
        switch try await host.call("get_size", [handle], gate: gate) {
        case .ok(let printed): sizeText = String(decoding: printed, as: UTF8.self).trimmingWhitespace
        case .missing: throw NBDError(.ioError, "\(host.displayName): the get_size method is required")
        case .no: throw NBDError(.ioError, "\(host.displayName): get_size exited with status 3 (false)")
        }
        let size: UInt64
        do {
            size = try parseSize(sizeText, for: "get_size")
        } catch {
            throw NBDError(.ioError, "\(host.displayName): cannot read the size get_size printed: \(error.message)")
        }
        let writable = try await boolean("can_write", handle, gate: gate) && !readOnly
        let canFlush = try await boolean("can_flush", handle, gate: gate)
        let rotational = try await boolean("is_rotational", handle, gate: gate)
        let canTrim = try await boolean("can_trim", handle, gate: gate)
        let canZero = try await boolean("can_zero", handle, gate: gate)
        // nbdkit: without can_fast_zero, a fast zero is offered (and fails at once) when zeroing
        // is emulated, and not offered when the script zeroes.
        let canFastZero = try await boolean("can_fast_zero", handle, default: !canZero, gate: gate)
        let canExtents = try await boolean("can_extents", handle, gate: gate)
        let fua = try await tristate(
            "can_fua", handle, default: canFlush ? FUASupport.emulated : .none,
            values: ["none": .none, "emulate": .emulated, "native": .native], gate: gate)
        let canMultiConn = try await boolean("can_multi_conn", handle, gate: gate)
        let cache = try await tristate(
            "can_cache", handle, default: CacheSupport.none,
            values: ["none": .none, "emulate": .emulated, "native": .native], gate: gate)
        let blockSize = try await blockSizes(handle, gate: gate)
        var capabilities = Capabilities(
            size: size, isWritable: writable, canFlush: canFlush, fua: fua, canTrim: canTrim, canZero: true,
            canFastZero: canFastZero, cache: cache, canExtents: canExtents, canMultiConn: canMultiConn,
            isRotational: rotational, blockSize: blockSize, suspendingOperations: .all)
        if !writable { capabilities = capabilities.readOnly }
        return ScriptBackend(host: host, handle: handle, gate: gate, zeroIsNative: canZero, capabilities: capabilities)
    }

    /// A `can_*` method: exit 0 is true, 3 false, 2 (missing) `defaultValue`.
    private func boolean(_ method: String, _ handle: String, default defaultValue: Bool = false, gate: ScriptGate?)
        async throws(NBDError) -> Bool
    {
        switch try await host.call(method, [handle], gate: gate) {
        case .ok: true
        case .no: false
        case .missing: defaultValue
        }
    }

    /// `can_fua` or `can_cache`: prints `none`, `emulate` or `native`.
    private func tristate<T: Sendable>(
        _ method: String, _ handle: String, default defaultValue: T, values: [String: T], gate: ScriptGate?
    ) async throws(NBDError) -> T {
        switch try await host.call(method, [handle], gate: gate) {
        case .ok(let printed):
            let text = String(decoding: printed, as: UTF8.self).droppingFinalNewline
            guard let value = values[text.lowercased()] else {
                throw NBDError(
                    .ioError, "\(host.displayName): \(method) printed '\(text)': expected none, emulate or native")
            }
            return value
        case .missing: return defaultValue
        case .no: throw NBDError(.ioError, "\(host.displayName): \(method) exited with status 3 (false)")
        }
    }

    /// `block_size`: minimum, preferred and maximum, in nbdkit's size format.
    private func blockSizes(_ handle: String, gate: ScriptGate?) async throws(NBDError) -> BlockSizeConstraints {
        guard case .ok(let printed) = try await host.call("block_size", [handle], gate: gate) else { return .default }
        let text = String(decoding: printed, as: UTF8.self)
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        let values = fields.prefix(3).compactMap { try? parseSize(String($0), for: "block_size") }
        guard fields.count >= 3, values.count == 3, values.allSatisfy({ $0 <= UInt64(UInt32.max) }) else {
            throw NBDError(
                .ioError,
                "\(host.displayName): cannot read block_size's output '\(text.trimmingWhitespace)': expected MINIMUM PREFERRED MAXIMUM"
            )
        }
        // The server's own limit is 32 MiB; nbdkit's 4294967295 means "no limit".
        var sizes = BlockSizeConstraints(
            minimum: UInt32(values[0]), preferred: UInt32(values[1]),
            maximumPayload: UInt32(min(values[2], 32 << 20)), isEnforced: false)
        guard sizes.isValid else {
            throw NBDError(
                .ioError,
                "\(host.displayName): block_size printed \(values[0]) \(values[1]) \(values[2]): the minimum must be a power of two up to 64K, the preferred a power of two from 512, and the maximum at least the preferred"
            )
        }
        // As nbdkit's server: the sizes are advertised, but requests that ignore them reach the script.
        sizes.enforcedMaximumPayload = 32 << 20
        return sizes
    }
}

extension ScriptHost {
    /// Runs a method whose only answer is success: exit 0 or 2 (missing) is fine, 3 is an error.
    func expectSuccess(_ method: String, _ arguments: [String] = [], gate: ScriptGate? = nil) async throws(NBDError) {
        if try await call(method, arguments, gate: gate) == .no {
            throw NBDError(
                .ioError, "\(displayName): \(method) exited with status 3 (false), which only can_* methods may")
        }
    }
}
