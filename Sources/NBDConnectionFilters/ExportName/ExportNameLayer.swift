import NBDCore

/// nbdkit's exportname filter: changes which exports the server advertises (`NBD_OPT_LIST`),
/// which export the default name `""` stands for, which names a client may open, and the export
/// descriptions.
///
/// ```swift
/// let layer = try ExportNameLayer(parameters: [
///     "exportname-list": "explicit", "exportname-strict": "true",
///     "exportname": "file1", "exportname": "file3",
/// ])
/// ```
public struct ExportNameLayer: FilterLayer {
    /// What `NBD_OPT_LIST` answers (`exportname-list=`).
    public enum ListMode: String, Sendable, Hashable, CaseIterable {
        /// The layers below's list.
        case keep
        /// An error (`NBD_REP_ERR_PLATFORM`, as nbdkit).
        case error
        /// No export.
        case empty
        /// The default export's canonical name alone.
        case defaultOnly = "defaultonly"
        /// The `exportname=` names.
        case explicit
    }

    /// Where export descriptions come from (`exportdesc=`).
    public enum DescriptionMode: Sendable, Hashable {
        /// The layers below's descriptions.
        case keep
        /// No description.
        case none
        /// The same text for every export.
        case fixed(String)
        /// The output of a shell command run with `$name` set to the export name.
        case script(String)
    }

    public var name: String { Self.filterName }
    /// The export `""` stands for, or `""` to keep the layers below's choice.
    public let defaultExportName: String
    /// What `NBD_OPT_LIST` answers.
    public let listMode: ListMode
    /// Whether only `exportname=` names may be opened.
    public let isStrict: Bool
    /// The `exportname=` names, in order.
    public let names: [String]
    /// Where descriptions come from.
    public let descriptionMode: DescriptionMode

    /// Creates the layer.
    public init(
        defaultExport: String = "", list: ListMode = .keep, strict: Bool = false, names: [String] = [],
        description: DescriptionMode = .keep
    ) {
        self.defaultExportName = defaultExport
        self.listMode = list
        self.isStrict = strict
        self.names = names
        self.descriptionMode = description
    }

    /// The description for `export`, given the layers below's.
    func describe(_ export: String, below: String?) async throws(NBDError) -> String? {
        switch descriptionMode {
        case .keep: return below
        case .none: return ""
        case .fixed(let text): return text
        case .script(let script):
            switch await ShellScript.run(script, environment: ["name": export]) {
            case .failure(let error): throw error
            case .success(let outcome):
                var output = outcome.output.prefix(4096)
                while output.last == UInt8(ascii: "\n") { output.removeLast() }
                return String(decoding: output, as: UTF8.self)
            }
        }
    }

    public func defaultExport(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> String
    ) async throws(NBDError) -> String {
        defaultExportName.isEmpty ? try await below(connection) : defaultExportName
    }

    public func listExports(
        _ connection: ConnectionInfo, below: (ConnectionInfo) async throws(NBDError) -> [ExportEntry]
    ) async throws(NBDError) -> [ExportEntry] {
        var exports: [ExportEntry]
        switch listMode {
        case .keep: exports = try await below(connection)
        case .error:
            throw NBDError(.notPermitted, "exportname: the export list is restricted by policy (exportname-list=error)")
        case .empty: return []
        case .defaultOnly:
            // "" is listed under the stack's canonical default name by the server.
            exports = [ExportEntry(name: defaultExportName)]
        case .explicit: exports = names.map { ExportEntry(name: $0) }
        }
        for index in exports.indices {
            exports[index].description = try await describe(exports[index].name, below: exports[index].description)
        }
        return exports
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        if case .keep = descriptionMode { return next }
        let description = try await describe(connection.exportName, below: next.exportDescription)
        return AnyBlockBackend(DescribedFilter(next: next, exportDescription: description))
    }

    /// Refuses, under `exportname-strict=true`, a name not among `exportname=`, before opening below.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        if isStrict && !names.contains(connection.exportName) {
            throw NBDError(
                .invalidArgument,
                "exportname: export '\(connection.exportName)' not found: exportname-strict=true admits only the exportname= names (\(names.joined(separator: ", ")))"
            )
        }
        let next = try await openBelow(connection)
        do {
            return try await wrap(next, for: connection)
        } catch {
            await next.close()
            throw error
        }
    }
}

/// Replaces the export description of the layer below.
struct DescribedFilter: Filter {
    let next: AnyBlockBackend
    let exportDescription: String?
}

extension ExportNameLayer: ConfigurableFilterLayer {
    public static var filterName: String { "exportname" }
    public static var summary: String {
        "change the advertised export list, the default export, which names may be opened, and descriptions"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription("default-export", "the export a client asking for \"\" gets"),
            ParameterDescription(
                "exportname-list", "what NBD_OPT_LIST answers: keep, error, empty, defaultonly or explicit",
                default: "keep"),
            ParameterDescription(
                "exportname-strict", "refuse export names not given with exportname=", default: "false"),
            ParameterDescription(
                "exportname", "an export name to advertise (explicit) or admit (strict)", repeatable: true),
            ParameterDescription(
                "exportdesc", "export descriptions: keep, none, fixed:STRING, or script:SCRIPT (run with $name set)",
                default: "keep"),
        ]
    }

    /// Creates the layer from its parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        let list = try parameters.choice(
            "exportname-list",
            [
                "keep": ListMode.keep, "error": .error, "empty": .empty, "defaultonly": .defaultOnly,
                "explicit": .explicit,
            ],
            default: .keep)
        let description: DescriptionMode
        switch parameters["exportdesc"] {
        case nil, "keep": description = .keep
        case "none": description = .none
        case let text? where text.hasPrefix("fixed:"): description = .fixed(String(text.dropFirst(6)))
        case let text? where text.hasPrefix("script:"): description = .script(String(text.dropFirst(7)))
        case let text?:
            throw NBDError(
                .invalidArgument, "exportdesc=\(text): expected one of keep, none, fixed:STRING, script:SCRIPT")
        }
        self.init(
            defaultExport: parameters["default-export"] ?? "", list: list,
            strict: try parameters.boolean("exportname-strict", default: false), names: parameters.all("exportname"),
            description: description)
    }
}
