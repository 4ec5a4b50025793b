import NBDCore
import Synchronization

/// Holds the `ServerControl` a layer receives in `attach`, for a filter that must act on the
/// server later. Before `attach` (a stack used without a server) its actions do nothing.
final class ControlSlot: Sendable {
    private let control = LockedValue<ServerControl>(.detached)

    func attach(_ newControl: ServerControl) {
        control.withLock { $0 = newControl }
    }

    var current: ServerControl { control.withLock { $0 } }
}
