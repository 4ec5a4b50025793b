// A memory export served under a swift-service-lifecycle ServiceGroup, logging through swift-log and
// reporting requests to swift-metrics:
//
//     swift run --package-path Integrations nbd-integrations-example /tmp/nbd.sock
//     nbdinfo 'nbd+unix:///?socket=/tmp/nbd.sock'
//     kill -TERM <pid>    # or Ctrl-C: the server drains, closes its backends, and the program ends
//
// A real program bootstraps a metrics backend first (for example swift-prometheus's
// `MetricsSystem.bootstrap(PrometheusMetricsFactory(...))`); without one, swift-metrics records nothing.

import Logging
import NBDBackends
import NBDCore
import NBDLogging
import NBDMetrics
import NBDServer
import NBDServiceLifecycle
import ServiceLifecycle
import UnixSignals

let arguments = CommandLine.arguments.dropFirst()
let socketPath = arguments.first ?? "/tmp/nbd-integrations-example.sock"

var logger = Logger(label: "nbd-integrations-example")
logger.logLevel = .debug

var configuration = ServerConfiguration()
configuration.log(to: logger)  // NBDLogging: the server's events, at their levels, with metadata

let export = FilterStack(
    [MetricsLayer(dimensions: [("export", "memory")])],  // NBDMetrics
    over: try MemoryBackendProvider(size: 64 << 20))
let server = NBDServer(provider: export, configuration: configuration)

let group = ServiceGroup(
    services: [NBDServerService(server: server, listeningOn: [.unix(path: socketPath)])],  // NBDServiceLifecycle
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: logger)
logger.info("serving nbd+unix:///?socket=\(socketPath)")
try await group.run()
logger.info("stopped")
