/// systemd's socket activation, as nbdkit supports it: a parent that sets `LISTEN_PID` to this
/// process's ID and `LISTEN_FDS` to N has passed N listening sockets as descriptors 3 to 3 + N − 1
/// (systemd, or libnbd's `nbd_connect_systemd_socket_activation`, which `nbdinfo -- [ CMD ]` and
/// `nbdcopy -- [ CMD ] …` use).
package enum SocketActivation {
    /// The first passed descriptor.
    package static let firstDescriptor: Int32 = 3

    /// The passed listening descriptors, or `nil` when this process was not socket-activated (no
    /// variables, or `LISTEN_PID` names another process, such as a parent that was activated).
    package static func descriptors(listenPID: String?, listenFDs: String?, pid: Int32) -> [Int32]? {
        guard let listenPID, Int32(listenPID) == pid, let text = listenFDs, let count = Int32(text), count > 0,
            count < 1024
        else { return nil }
        return Array(firstDescriptor..<(firstDescriptor + count))
    }

    /// Refuses options that choose another way to get clients, as nbdkit does.
    package static func check(_ options: ServeOptions) throws(CommandLineError) {
        if options.listensWhereTold || options.servesStandardInput {
            throw CommandLineError(
                "started with socket activation (LISTEN_PID, LISTEN_FDS): the listening socket is given, so leave out -U, -p, -i and -s")
        }
    }

    /// The variables to remove once the descriptors are taken, so that a `--run` command does not
    /// take them for its own.
    package static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
}
