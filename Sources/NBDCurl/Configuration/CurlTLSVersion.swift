/// The lowest TLS or SSL version a transfer accepts, with nbdkit's `ssl-version=` names.
public struct CurlTLSVersion: Sendable, Hashable, CustomStringConvertible {
    /// libcurl's `CURL_SSLVERSION_*` value.
    public let curlValue: Int
    /// The name on the command line.
    public let name: String

    private init(_ curlValue: Int, _ name: String) {
        self.curlValue = curlValue
        self.name = name
    }

    /// Any TLS 1.x.
    public static let tlsv1 = CurlTLSVersion(1, "tlsv1")
    /// SSL 2 (refused by every current TLS library).
    public static let sslv2 = CurlTLSVersion(2, "sslv2")
    /// SSL 3 (refused by every current TLS library).
    public static let sslv3 = CurlTLSVersion(3, "sslv3")
    /// TLS 1.0 or later.
    public static let tlsv1_0 = CurlTLSVersion(4, "tlsv1.0")
    /// TLS 1.1 or later.
    public static let tlsv1_1 = CurlTLSVersion(5, "tlsv1.1")
    /// TLS 1.2 or later.
    public static let tlsv1_2 = CurlTLSVersion(6, "tlsv1.2")
    /// TLS 1.3.
    public static let tlsv1_3 = CurlTLSVersion(7, "tlsv1.3")
    /// libcurl's default.
    public static let `default` = CurlTLSVersion(0, "default")

    /// Every version, in `ssl-version=` order.
    public static let all: [CurlTLSVersion] = [
        .default, .tlsv1, .sslv2, .sslv3, .tlsv1_0, .tlsv1_1, .tlsv1_2, .tlsv1_3,
    ]

    public var description: String { name }
}
