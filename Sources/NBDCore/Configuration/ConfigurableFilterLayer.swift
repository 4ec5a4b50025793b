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
