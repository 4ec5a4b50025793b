import NBDCore

extension RBDProvider: ConfigurableBackendProvider {
    public static var backendName: String { "rbd" }
    public static var summary: String { "a Ceph RBD image through librbd (Debian package librbd1)" }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "image",
                "[POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]; the pool defaults to rbd, a snapshot is served read-only",
                required: true),
            ParameterDescription("conf", "the ceph.conf to read (default: librados' search, /etc/ceph/ceph.conf)"),
            ParameterDescription("user", "the Ceph client id, without client.", default: "admin"),
            ParameterDescription("keyring", "the keyring file with the user's key (default: the one ceph.conf names)"),
            ParameterDescription("cache", "librbd's writeback cache (rbd_cache), per image handle", default: "true"),
            ParameterDescription(
                "handles",
                "shared: one image handle opened at start serves every client; per-connection: each client connection opens its own",
                default: RBDProvider.defaultHandles.rawValue),
            ParameterDescription(
                "timeout",
                "bound on connecting to the monitors and on each monitor and OSD request, such as 30 or 10s (default 30 s where ceph.conf sets none)"
            ),
        ]
    }
    public static var positionalParameter: String? { "image" }
    public static var example: String { "rbd rbd/disk conf=/etc/ceph/ceph.conf" }

    /// Creates the provider from `image` and the client parameters; connects and opens the image.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        let spec = try RBDImageSpec(try parameters.required("image", example: "rbd/disk"))
        var configuration = RBDClientConfiguration()
        if let conf = parameters["conf"] {
            guard !conf.isEmpty else { throw NBDError(.invalidArgument, "conf=: expected the path of a ceph.conf") }
            configuration.confPath = conf
        }
        if let user = parameters["user"] {
            guard !user.isEmpty, !user.hasPrefix("client.") else {
                throw NBDError(.invalidArgument, "user=\(user): expected a client id such as admin (without client.)")
            }
            configuration.user = user
        }
        if let keyring = parameters["keyring"] {
            guard !keyring.isEmpty else { throw NBDError(.invalidArgument, "keyring=: expected a keyring file") }
            configuration.keyring = keyring
        }
        configuration.cache = try parameters.boolean("cache", default: true)
        if let timeout = try parameters.duration("timeout") {
            guard timeout > .zero else {
                throw NBDError(.invalidArgument, "timeout=\(parameters["timeout"]!): expected a duration above zero")
            }
            configuration.timeout = timeout
        }
        let handles = try parameters.choice(
            "handles", ["shared": RBDHandleMode.shared, "per-connection": .perConnection],
            default: RBDProvider.defaultHandles)
        options.logger?(
            "rbd: \(spec) through \(configuration.confPath ?? "librados' default ceph.conf") as client.\(configuration.user), handles=\(handles.rawValue), cache=\(configuration.cache)"
        )
        try await self.init(spec: spec, configuration: configuration, handles: handles, isReadOnly: options.isReadOnly)
    }
}
