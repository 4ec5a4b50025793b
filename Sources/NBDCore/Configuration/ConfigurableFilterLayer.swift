/// A ``FilterLayer`` that describes itself to a command line and can be built from nbdkit-style
/// `key=value` parameters, so that `nbd-serve --filter=stats memory 1G statsfile=/tmp/s.txt` can
/// create it and `nbd-serve --help` can list it.
///
/// This is the one place a filter module speaks to the command line, the way an nbdkit filter
/// exports its `config` and `config_help`: adding a filter to `nbd-serve` is a conformance in the
/// filter's module plus one line in `nbd-serve`'s list of filters.
public protocol ConfigurableFilterLayer: FilterLayer {
    /// The name used with `--filter=NAME`; nbdkit's name where nbdkit has the filter.
    static var filterName: String { get }
    /// A one-line description for `--help`.
    static var summary: String { get }
    /// The parameters this filter accepts, in `--help` order.
    static var parameters: [ParameterDescription] { get }
    /// Whether the backend under this filter must be opened read-only (nbdkit's cow filter). Has a
    /// default of `false`.
    static var opensLayerBelowReadOnly: Bool { get }

    /// Creates the layer from the parameters routed to it (only keys listed in ``parameters``).
    ///
    /// Throws ``NBDError`` whose message names the parameter and what it accepts when a value is
    /// invalid or a required parameter is missing; ``ParameterValues``' typed accessors write such
    /// messages.
    init(parameters: ParameterValues) throws(NBDError)
}

extension ConfigurableFilterLayer {
    /// Whether `key` is one of this filter's parameters.
    public static func accepts(_ key: String) -> Bool {
        parameters.contains { $0.name == key }
    }
}

extension ConfigurableFilterLayer {
    /// Whether the backend under this filter is opened read-only (nbdkit's cow filter passes
    /// `readonly=1` to the plugin), so that a read-only file or device can be served writable. The
    /// export itself stays writable unless the server is read-only. The default is `false`.
    public static var opensLayerBelowReadOnly: Bool { false }
}
