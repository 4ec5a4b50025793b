/// How to reach a Ceph cluster: librados' configuration file, identity and client settings.
public struct RBDClientConfiguration: Sendable, Hashable {
    /// The `ceph.conf` to read, or `nil` for librados' own search (`$CEPH_CONF`,
    /// `/etc/ceph/ceph.conf`, `~/.ceph/config`, `./ceph.conf`).
    public var confPath: String?
    /// The client's id, without `client.` (librados' default is `admin`).
    public var user: String
    /// The keyring file with the user's key, or `nil` for the one ceph.conf names (or none, with
    /// `auth_client_required = none`).
    public var keyring: String?
    /// librbd's writeback cache (`rbd_cache`), per image handle.
    public var cache: Bool
    /// The bound on connecting to the monitors, on each monitor request and on each OSD request
    /// (`client_mount_timeout`, `rados_mon_op_timeout`, `rados_osd_op_timeout`), or `nil` for
    /// ``defaultTimeout`` where ceph.conf leaves librados' defaults (5 minutes to connect, no bound on
    /// requests: a stopped OSD would hang a client forever).
    public var timeout: Duration?

    /// The timeout used where neither ``timeout`` nor ceph.conf sets one: long enough for an OSD to
    /// restart or a placement group to peer, short enough that a client sees `EIO` rather than a hang.
    public static let defaultTimeout: Duration = .seconds(30)

    /// Creates a configuration; the defaults read `/etc/ceph/ceph.conf` as `client.admin`, with the cache.
    public init(
        confPath: String? = nil, user: String = "admin", keyring: String? = nil, cache: Bool = true,
        timeout: Duration? = nil
    ) {
        self.confPath = confPath
        self.user = user
        self.keyring = keyring
        self.cache = cache
        self.timeout = timeout
    }
}
