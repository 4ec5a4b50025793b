import NBDCore
import NBDServer

/// What `nbd-serve` will serve: the backend with its parameters and the filters with theirs, after
/// each `KEY=VALUE` was routed to the first filter (outermost first) that declares the key, and
/// otherwise to the backend.
///
/// Making a plan checks every name and key, so mistakes are reported before anything listens.
///
/// ```swift
/// let options = try ServeOptions.parse(["--filter=stats", "memory", "1G", "statsfile=/tmp/s.txt"])
/// let plan = try ExportPlan(options)
/// // plan.backendParameters["size"] == "1G", plan.filters[0].parameters["statsfile"] == "/tmp/s.txt"
/// ```
package struct ExportPlan: Sendable {
    /// One filter of the stack with the parameters routed to it.
    package struct FilterPlan: Sendable {
        /// The filter's layer type.
        package var type: any ConfigurableFilterLayer.Type
        /// The `KEY=VALUE` parameters routed to it.
        package var parameters: ParameterValues
        /// The filter's `--filter` name.
        package var name: String
        /// The keys the filter declares.
        package var parameterNames: Set<String>

        init(type: any ConfigurableFilterLayer.Type) {
            self.type = type
            self.parameters = ParameterValues()
            self.name = type.filterName
            self.parameterNames = Set(type.parameters.map(\.name))
        }
    }

    /// The backend.
    package var backend: any ConfigurableBackendProvider.Type
    /// The backend's parameters, including the positional argument under its key.
    package var backendParameters: ParameterValues
    /// The filters, outermost first.
    package var filters: [FilterPlan]
    /// Whether the export is served read-only.
    package var isReadOnly: Bool

    /// The backend's name.
    package var backendName: String { backend.backendName }

    /// Routes the parameters of `options`.
    ///
    /// - Throws: ``CommandLineError`` for an unknown backend or filter, a parameter that neither a
    ///   filter given nor the backend declares (naming the filter or backend that would take it;
    ///   a backend that accepts unlisted parameters takes every such key), or
    ///   the backend's main parameter given twice.
    package init(_ options: ServeOptions) throws(CommandLineError) {
        guard let name = options.backend, let backend = ServeCatalog.backend(named: name) else {
            throw ServeCatalog.unknownBackend(options.backend ?? "")
        }
        var filters: [FilterPlan] = []
        for filterName in options.filters {
            guard let type = ServeCatalog.filter(named: filterName) else { throw ServeCatalog.unknownFilter(filterName) }
            filters.append(FilterPlan(type: type))
        }
        // (A key path such as \.backendName on these existential metatypes crashes the Swift 6.3
        // compiler; closures and this summary avoid them.)
        let description = BackendSummary(backend)
        var backendParameters = ParameterValues()
        if let argument = options.backendArgument {
            guard let positional = description.positionalParameter else {
                throw CommandLineError(
                    "the \(description.name) backend takes no plain argument ('\(argument)'); write its parameters as KEY=VALUE, for example 'nbd-serve -U - \(description.example)'"
                )
            }
            backendParameters.append(positional, argument)
        }
        for parameter in options.parameters {
            if parameter.key.isEmpty {
                // A further plain argument: the main parameter again, if it may be repeated (split
                // a b c), or, for a backend that takes unlisted parameters, under its main key in
                // command-line order (sh passes it to the script's magic_config_key).
                guard let positional = description.positionalParameter,
                    description.repeatable.contains(positional) || description.acceptsUnlistedParameters
                else {
                    throw CommandLineError(
                        "unexpected argument '\(parameter.value)': after the backend, only one plain argument is allowed, and it must come first; write the others as KEY=VALUE"
                    )
                }
                backendParameters.append(positional, parameter.value)
                continue
            }
            if let index = filters.firstIndex(where: { $0.parameterNames.contains(parameter.key) }) {
                filters[index].parameters.append(parameter.key, parameter.value)
                continue
            }
            guard description.parameterNames.contains(parameter.key) || description.acceptsUnlistedParameters else {
                throw CommandLineError(
                    Self.unknownParameterMessage(parameter, backendName: description.name, filters: filters))
            }
            if parameter.key == description.positionalParameter, !description.repeatable.contains(parameter.key),
                let argument = options.backendArgument
            {
                throw CommandLineError(
                    "\(parameter.key) is given twice, as '\(argument)' and as '\(parameter.key)=\(parameter.value)': give it once"
                )
            }
            backendParameters.append(parameter.key, parameter.value)
        }
        self.backend = backend
        self.backendParameters = backendParameters
        self.filters = filters
        self.isReadOnly = options.isReadOnly
    }

    /// Says who does not take `parameter`, and who would: a filter not given (add it with
    /// `--filter`) or another backend.
    private static func unknownParameterMessage(
        _ parameter: ServeOptions.Parameter, backendName: String, filters: [FilterPlan]
    ) -> String {
        let given =
            filters.isEmpty
            ? "the \(backendName) backend does not take it and no filter is given"
            : "neither the \(backendName) backend nor the filters given (\(filters.map(\.name).joined(separator: ", "))) take it"
        var text = "unknown parameter '\(parameter.key)' in '\(parameter.key)=\(parameter.value)': \(given)"
        let owners = ServeCatalog.filters.filter { $0.accepts(parameter.key) }.map { $0.filterName }
        let backends = ServeCatalog.backends.filter { $0.accepts(parameter.key) }.map { $0.backendName }
        if !owners.isEmpty {
            text += "; it belongs to the \(owners.joined(separator: ", ")) filter: add --filter=\(owners[0])"
        } else if !backends.isEmpty {
            text += "; it is a parameter of the \(backends.joined(separator: ", ")) backend"
        } else {
            text += "; run 'nbd-serve --help' for the parameters"
        }
        return text
    }

    /// The static facts of a backend type, read without throwing.
    private struct BackendSummary {
        var name: String
        var example: String
        var positionalParameter: String?
        var parameterNames: Set<String>
        var acceptsUnlistedParameters: Bool
        var repeatable: Set<String>

        init(_ type: any ConfigurableBackendProvider.Type) {
            name = type.backendName
            example = type.example
            positionalParameter = type.positionalParameter
            parameterNames = Set(type.parameters.map(\.name))
            acceptsUnlistedParameters = type.acceptsUnlistedParameters
            repeatable = Set(type.parameters.filter(\.isRepeatable).map(\.name))
        }
    }

    /// Creates the filter layers, outermost first. Filters check their values here.
    package func makeLayers() throws(CommandLineError) -> [any FilterLayer] {
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

    /// Creates the filters, the backend and a server for them. Nothing listens yet.
    package func makeServer(
        configuration: ServerConfiguration, options: BackendOptions = BackendOptions()
    ) async throws(CommandLineError) -> NBDServer {
        let layers = try makeLayers()
        var configuration = configuration
        configuration.isReadOnly = configuration.isReadOnly || isReadOnly
        var options = options
        // A filter such as cow never writes below, and lets a read-only file be served writable.
        options.isReadOnly = configuration.isReadOnly || filters.contains { $0.type.opensLayerBelowReadOnly }
        do {
            return try await Self.makeServer(
                backend, parameters: backendParameters, options: options, layers: layers,
                configuration: configuration)
        } catch {
            throw CommandLineError("\(backend.backendName) backend: \(error.message)")
        }
    }

    private static func makeServer<Provider: ConfigurableBackendProvider>(
        _ type: Provider.Type, parameters: ParameterValues, options: BackendOptions, layers: [any FilterLayer],
        configuration: ServerConfiguration
    ) async throws(NBDError) -> NBDServer {
        let provider = try await Provider(parameters: parameters, options: options)
        return NBDServer(provider: FilterStack(layers, over: provider), configuration: configuration)
    }
}
