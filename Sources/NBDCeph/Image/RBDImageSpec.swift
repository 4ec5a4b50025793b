import NBDCore

/// Which RBD image (or snapshot of one) to serve, written as the `rbd` tool writes it:
/// `[POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]`, the pool defaulting to `rbd`.
///
/// ```swift
/// let spec = try RBDImageSpec("rbd/tenant1/disk@before-upgrade")
/// // spec.pool == "rbd", spec.namespace == "tenant1", spec.image == "disk",
/// // spec.snapshot == "before-upgrade"
/// ```
public struct RBDImageSpec: Sendable, Hashable, CustomStringConvertible {
    /// The RADOS pool holding the image.
    public var pool: String
    /// The RADOS namespace within the pool; empty for the default one.
    public var namespace: String
    /// The image name.
    public var image: String
    /// The snapshot to serve (read-only), or `nil` for the image itself.
    public var snapshot: String?

    /// The pool used when a spec names none, as for the `rbd` tool.
    public static let defaultPool = "rbd"

    /// Creates a spec from its parts.
    public init(pool: String = RBDImageSpec.defaultPool, namespace: String = "", image: String, snapshot: String? = nil)
    {
        self.pool = pool
        self.namespace = namespace
        self.image = image
        self.snapshot = snapshot
    }

    /// Parses `[POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]`.
    ///
    /// - Throws: `NBDError` (`EINVAL`) for an empty part or more than three `/`-separated parts.
    public init(_ text: String) throws(NBDError) {
        let example = "expected [POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT], for example rbd/disk or rbd/disk@snap"
        var path = Substring(text)
        var snapshot: String?
        if let at = text.firstIndex(of: "@") {
            path = text[..<at]
            snapshot = String(text[text.index(after: at)...])
            guard !snapshot!.isEmpty, !snapshot!.contains("@") else {
                throw NBDError(.invalidArgument, "image=\(text): bad snapshot name; \(example)")
            }
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count), !parts.contains(where: \.isEmpty) else {
            throw NBDError(.invalidArgument, "image=\(text): \(example)")
        }
        switch parts.count {
        case 1: self.init(image: parts[0], snapshot: snapshot)
        case 2: self.init(pool: parts[0], image: parts[1], snapshot: snapshot)
        default: self.init(pool: parts[0], namespace: parts[1], image: parts[2], snapshot: snapshot)
        }
        guard ![pool, namespace, image, snapshot ?? ""].contains(where: { $0.utf8.contains(0) }) else {
            throw NBDError(.invalidArgument, "image=\(text): names cannot contain NUL")
        }
    }

    /// The spec as the `rbd` tool writes it, always with the pool.
    public var description: String {
        var text = pool + "/" + (namespace.isEmpty ? "" : namespace + "/") + image
        if let snapshot { text += "@" + snapshot }
        return text
    }
}
