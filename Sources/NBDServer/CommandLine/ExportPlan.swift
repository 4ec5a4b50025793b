import NBDBackends
import NBDCore

/// What `nbd-serve` will serve: the backend with its parameters and the filters with theirs, after
/// each `KEY=VALUE` was routed to the first filter (outermost first) that declares the key, and
/// otherwise to the backend.
///
/// Making a plan checks every name and key, so mistakes are reported before anything listens.
///
/// ```swift
/// let options = try ServeOptions.parse(["--filter=stats", "memory", "1G", "statsfile=/tmp/s.txt"])
/// let plan = try ExportPlan(options)
/// // plan.backendParameters == ["size": "1G"], plan.filters[0].parameters == ["statsfile": "/tmp/s.txt"]
/// ```
public struct ExportPlan: Sendable {
    /// One filter of the stack with the parameters routed to it.
    public struct FilterPlan: Sendable {
        /// The filter's layer type.
        public var type: any ConfigurableFilterLayer.Type
        /// The `KEY=VALUE` parameters routed to it.
        public var parameters: [String: String]
        /// The filter's `--filter` name.
        public var name: String { type.filterName }
    }

    /// The backend.
    public var backend: BackendKind
    /// The backend's parameters, including the positional argument under its key.
    public var backendParameters: [String: String]
    /// The filters, outermost first.
    public var filters: [FilterPlan]
    /// Whether the export is served read-only.
    public var isReadOnly: Bool

    /// Routes the parameters of `options`.
    ///
    /// - Throws: ``CommandLineError`` for an unknown backend or filter, a parameter that neither a
    ///   filter nor the backend declares, or the backend's main parameter given twice.
    public init(_ options: ServeOptions) throws(CommandLineError) {
        guard let name = options.backend, let backend = BackendKind.named(name) else {
            throw CommandLineError(
                "unknown backend '\(options.backend ?? "")': use one of \(BackendKind.all.map(\.name).joined(separator: ", ")); run 'nbd-serve --help' for their parameters"
            )
        }
        var filters: [FilterPlan] = []
        for filterName in options.filters {
            guard let type = FilterRegistry.named(filterName) else {
                throw CommandLineError(
                    "unknown filter '\(filterName)': use one of \(FilterRegistry.names); run 'nbd-serve --help' for their parameters"
                )
            }
            filters.append(FilterPlan(type: type, parameters: [:]))
        }
        var backendParameters: [String: String] = [:]
        if let argument = options.backendArgument {
            backendParameters[backend.positionalParameter] = argument
        }
        for parameter in options.parameters {
            if let index = filters.firstIndex(where: { plan in
                plan.type.parameters.contains { $0.name == parameter.key }
            }) {
                filters[index].parameters[parameter.key] = parameter.value
                continue
            }
            guard backend.accepts(parameter.key) else {
                let filterNames =
                    filters.isEmpty ? "" : " nor the filters (\(filters.map(\.name).joined(separator: ", ")))"
                throw CommandLineError(
                    "unknown parameter '\(parameter.key)' in '\(parameter.key)=\(parameter.value)': neither the \(backend.name) backend\(filterNames) accept it; run 'nbd-serve --help' for the parameters"
                )
            }
            if parameter.key == backend.positionalParameter, options.backendArgument != nil {
                throw CommandLineError(
                    "\(backend.positionalParameter) is given twice, as '\(options.backendArgument!)' and as '\(parameter.key)=\(parameter.value)': give it once"
                )
            }
            backendParameters[parameter.key] = parameter.value
        }
        self.backend = backend
        self.backendParameters = backendParameters
        self.filters = filters
        self.isReadOnly = options.isReadOnly
    }

    /// Creates the filter layers, outermost first. Filters check their values here.
    public func makeLayers() throws(CommandLineError) -> [any FilterLayer] {
        var layers: [any FilterLayer] = []
        for filter in filters {
            do {
                layers.append(try filter.type.init(parameters: filter.parameters))
            } catch {
                throw CommandLineError("filter '\(filter.name)': \(error.message)")
            }
        }
        return layers
    }

    /// Creates the backend, the filters and a server for them. Nothing listens yet.
    public func makeServer(configuration: ServerConfiguration) throws(CommandLineError) -> NBDServer {
        let layers = try makeLayers()
        var configuration = configuration
        configuration.isReadOnly = configuration.isReadOnly || isReadOnly
        func required(_ key: String) throws(CommandLineError) -> String {
            guard let value = backendParameters[key] else {
                throw CommandLineError(
                    "the \(backend.name) backend needs \(key)=...: for example 'nbd-serve -U - \(backend.name) \(key == "file" ? "disk.img" : "1G")'"
                )
            }
            return value
        }
        do {
            switch backend.name {
            case BackendKind.memory.name:
                let size = try parseSize(try required("size"))
                return NBDServer(
                    provider: FilterStack(layers, over: try MemoryBackendProvider(size: size)),
                    configuration: configuration)
            case BackendKind.file.name:
                let path = try required("file")
                return NBDServer(
                    provider: FilterStack(
                        layers, over: try FileBackendProvider(path: path, readOnly: configuration.isReadOnly)),
                    configuration: configuration)
            default:
                let size = try parseSize(try required("size"))
                let strict =
                    try backendParameters["strictfua"].map { (text) throws(NBDError) in
                        try parseBoolean(text, for: "strictfua")
                    } ?? false
                let provider = try ConnectionCacheProvider(
                    size: size, initialText: backendParameters["init"] ?? "", strictFUA: strict)
                return NBDServer(provider: FilterStack(layers, over: provider), configuration: configuration)
            }
        } catch let error as CommandLineError {
            throw error
        } catch let error as NBDError {
            throw CommandLineError("\(backend.name) backend: \(error.message)")
        } catch {
            throw CommandLineError("\(backend.name) backend: \(error)")
        }
    }
}
