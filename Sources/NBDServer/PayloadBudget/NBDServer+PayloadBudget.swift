extension NBDServer {
    /// The bytes of ``ServerConfiguration/payloadMemoryBudget`` charged now (for tests and
    /// diagnostics).
    package var chargedPayloadBytes: Int { context.payloadBudget.chargedBytes }

    /// The most bytes of ``ServerConfiguration/payloadMemoryBudget`` charged at once since the
    /// server was created.
    package var peakChargedPayloadBytes: Int { context.payloadBudget.peakChargedBytes }

    /// How many connections wait for the payload memory budget now.
    package var connectionsWaitingForPayloadBudget: Int { context.payloadBudget.waitingConnections }
}
