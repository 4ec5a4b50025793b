import NBDCore

/// The extentlist filter as a run-time `FilterLayer`: `nbd-serve -r --filter=extentlist file disk.img
/// extentlist=disk.extents`. The file is read once, when the server starts.
public struct ExtentListLayer: FilterLayer {
    public var name: String { Self.filterName }
    /// The map.
    public let list: ExtentList

    /// Creates the layer from a parsed list.
    public init(list: ExtentList) {
        self.list = list
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(ExtentListFilter(wrapping: next, list: list))
    }
}

extension ExtentListLayer: ConfigurableFilterLayer {
    public static var filterName: String { "extentlist" }
    public static var summary: String { "answer block status from a static list of extents in a file" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "extentlist",
                "a file of 'offset length [type]' lines, type a number or 'hole', 'zero', 'hole,zero'; gaps are holes",
                required: true)
        ]
    }

    /// Creates the layer by reading the file named by `extentlist`.
    public init(parameters: ParameterValues) throws(NBDError) {
        let path = try parameters.required("extentlist", example: "disk.extents")
        self.init(list: try ExtentList(contentsOf: path))
    }
}
