import NBDCore
import NBDErrorFilter
import NBDFUAFilter
import NBDStatsFilter

/// The filters `nbd-serve` offers with `--filter=NAME`.
public enum FilterRegistry {
    /// Every filter, in `--help` order.
    public static let all: [any ConfigurableFilterLayer.Type] = [
        MultiConnLayer.self, FUALayer.self, StatsLayer.self, ErrorInjectionLayer.self,
    ]

    /// The filter called `name`, if any.
    public static func named(_ name: String) -> (any ConfigurableFilterLayer.Type)? {
        all.first { $0.filterName == name }
    }

    /// Every filter name, for error messages.
    public static var names: String {
        all.map { $0.filterName }.joined(separator: ", ")
    }
}
