import NBDCore

/// Passes everything through and runs `onClose` after the layer below closed: how exitlast and
/// exitwhen see a connection end.
struct CloseNotifyingFilter<Next: BlockBackend>: Filter {
    let next: Next
    let onClose: @Sendable () -> Void

    func close() async {
        await next.close()
        onClose()
    }
}
