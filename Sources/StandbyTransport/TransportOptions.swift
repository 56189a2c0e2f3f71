import Foundation

/// How transfers connect and authenticate. Every transfer has C-level timeouts: a connect
/// timeout, and a low-speed limit that aborts a transfer stalled below `lowSpeedLimit` bytes per
/// second for `lowSpeedTime` (a hung server or a dead link never blocks a run forever).
public struct TransportOptions: Sendable {
    public var connectTimeout: Duration
    public var lowSpeedLimit: Int
    public var lowSpeedTime: Duration
    /// A cap on the whole transfer; nil for none (a 10 GiB backup takes what it takes).
    public var totalTimeout: Duration?
    /// Bytes per second the transfer may receive; nil for no cap (peak-hour throttling).
    public var maxReceiveRate: Int64?
    /// Credentials not in the URL. Without them, libcurl reads ~/.netrc when `useNetrc` is set.
    public var credentials: Credentials?
    public var useNetrc: Bool
    /// Send credentials over plain http:// when the server asks for them. Off: they would cross
    /// the network in clear, so none are sent and a 401 says why.
    public var allowInsecureAuth: Bool = false
    public var ssh: SSHOptions
    public var tls: TLSOptions
    /// smb:// sources: dialects, encryption, Kerberos.
    public var smb: SMBOptions
    public var userAgent: String

    public init(
        connectTimeout: Duration = .seconds(10), lowSpeedLimit: Int = 1, lowSpeedTime: Duration = .seconds(30),
        totalTimeout: Duration? = nil, maxReceiveRate: Int64? = nil, credentials: Credentials? = nil,
        useNetrc: Bool = true, ssh: SSHOptions = SSHOptions(), tls: TLSOptions = TLSOptions(),
        smb: SMBOptions = SMBOptions(), userAgent: String = "standby"
    ) {
        self.connectTimeout = connectTimeout
        self.lowSpeedLimit = lowSpeedLimit
        self.lowSpeedTime = lowSpeedTime
        self.totalTimeout = totalTimeout
        self.maxReceiveRate = maxReceiveRate
        self.credentials = credentials
        self.useNetrc = useNetrc
        self.ssh = ssh
        self.tls = tls
        self.smb = smb
        self.userAgent = userAgent
    }
}

/// A user name and password. `description` never shows the password.
public struct Credentials: Sendable, CustomStringConvertible {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    /// Reads `<PREFIX>_USER` and `<PREFIX>_PASSWORD` from the environment (e.g. STANDBY_SOURCE).
    public static func fromEnvironment(
        prefix: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Credentials? {
        guard let user = environment["\(prefix)_USER"] else { return nil }
        return Credentials(user: user, password: environment["\(prefix)_PASSWORD"] ?? "")
    }

    public var description: String { "\(user):***" }
}

/// Key files and host verification for sftp:// and scp://.
public struct SSHOptions: Sendable {
    public var privateKeyFile: String?
    public var publicKeyFile: String?
    public var keyPassphrase: String?
    /// An OpenSSH known_hosts file; the host's key must be in it.
    public var knownHostsFile: String?
    /// The base64 SHA-256 fingerprint of the host key (as `ssh-keygen -lf` prints it, without
    /// the `SHA256:` prefix). Either this or `knownHostsFile` pins the host.
    public var hostKeySHA256: String?

    public init(
        privateKeyFile: String? = nil, publicKeyFile: String? = nil, keyPassphrase: String? = nil,
        knownHostsFile: String? = nil, hostKeySHA256: String? = nil
    ) {
        self.privateKeyFile = privateKeyFile
        self.publicKeyFile = publicKeyFile
        self.keyPassphrase = keyPassphrase
        self.knownHostsFile = knownHostsFile
        self.hostKeySHA256 = hostKeySHA256
    }
}

/// TLS verification for https://, ftps://.
public struct TLSOptions: Sendable {
    /// A PEM bundle of trusted CAs; nil for the system store.
    public var caFile: String?
    public var verifyPeer: Bool
    public var verifyHost: Bool
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    /// Collect the peer's certificate chain into `HTTPResponse.certificates` (TLS probes).
    public var collectCertificates: Bool

    public init(
        caFile: String? = nil, verifyPeer: Bool = true, verifyHost: Bool = true,
        clientCertificateFile: String? = nil, clientKeyFile: String? = nil, collectCertificates: Bool = false
    ) {
        self.caFile = caFile
        self.verifyPeer = verifyPeer
        self.verifyHost = verifyHost
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
        self.collectCertificates = collectCertificates
    }
}

/// A contiguous span of a file.
public struct ByteRange: Sendable, Hashable, CustomStringConvertible {
    public var offset: Int64
    public var length: Int64

    public init(offset: Int64, length: Int64) {
        self.offset = offset
        self.length = length
    }

    public var end: Int64 { offset + length }
    public var description: String { "\(offset)-\(offset + length - 1)" }
}

/// Size and modification time of a remote file, as the server reports them.
public struct RemoteFileInfo: Sendable, Hashable {
    /// Bytes; nil when the server did not say (chunked HTTP without Content-Length).
    public var size: Int64?
    /// Seconds since 1970, nil when the server did not say (no Last-Modified).
    public var modificationTime: Int64?

    public init(size: Int64?, modificationTime: Int64?) {
        self.size = size
        self.modificationTime = modificationTime
    }
}

/// Progress of one transfer, reported while it runs.
public struct TransferProgress: Sendable {
    public var received: Int64
    /// The total the server announced, if it did.
    public var expected: Int64?
    public var sent: Int64

    public init(received: Int64, expected: Int64?, sent: Int64) {
        self.received = received
        self.expected = expected
        self.sent = sent
    }
}

/// Bytes and requests a session moved so far: body bytes are the payload, header bytes the
/// protocol overhead that libcurl counts (HTTP headers; zero for file://).
public struct TransferStats: Sendable, Hashable {
    public var bodyBytes: Int64 = 0
    public var headerBytes: Int64 = 0
    public var requests: Int = 0

    public init() {}

    public var totalBytes: Int64 { bodyBytes + headerBytes }
}

/// How often to retry a request that failed in a way worth retrying (no connection, timeout,
/// HTTP 5xx or 429), with exponential backoff between attempts.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialDelay: Duration
    public var maxDelay: Duration
    public var multiplier: Double

    public init(
        attempts: Int, initialDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(10),
        multiplier: Double = 2
    ) {
        self.attempts = max(1, attempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.multiplier = multiplier
    }

    public static let none = RetryPolicy(attempts: 1)

    /// The pause before attempt `n` (1-based; attempt 1 has none).
    public func delay(beforeAttempt n: Int) -> Duration {
        guard n > 1 else { return .zero }
        let factor = pow(multiplier, Double(n - 2))
        let seconds = min(initialDelay.seconds * factor, maxDelay.seconds)
        return .milliseconds(Int64(seconds * 1000))
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }

    var milliseconds: Int64 {
        let (s, attoseconds) = components
        return s * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// An HTTP request for webhooks and http steps.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(name: String, value: String)]
    public var body: Data?
    public var timeout: Duration
    /// The largest response body kept; a larger one is an error (`tooLarge`).
    public var maxResponseBytes: Int
    public var followRedirects: Bool

    public init(
        method: String = "GET", url: URL, headers: [(name: String, value: String)] = [], body: Data? = nil,
        timeout: Duration = .seconds(30), maxResponseBytes: Int = 16 << 20, followRedirects: Bool = false
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
        self.followRedirects = followRedirects
    }
}

/// Timings libcurl measured for one transfer, from its start.
public struct TransferTimings: Sendable, Hashable {
    public var nameLookup: Duration = .zero
    public var connect: Duration = .zero
    /// TLS handshake done (zero for plain connections).
    public var appConnect: Duration = .zero
    public var firstByte: Duration = .zero
    public var total: Duration = .zero

    public init() {}
}

/// The answer to an `HTTPRequest`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Data
    public var timings: TransferTimings
    /// The peer's certificate chain, leaf first, as libcurl's "Name: value" fields (only when
    /// `TLSOptions.collectCertificates`). "Expire date" says when each expires.
    public var certificates: [[String: String]]

    public init(
        status: Int, headers: [(name: String, value: String)], body: Data, timings: TransferTimings,
        certificates: [[String: String]] = []
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.timings = timings
        self.certificates = certificates
    }

    /// The first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame })?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}
