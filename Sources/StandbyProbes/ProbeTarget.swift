/// What a probe checks, in the forms the topology uses:
/// `tcp: "host:port"`, `tls: "host:port"` (+ server name), `http: "https://…"` (+ expected status,
/// body match), `sip_options: "sip:pool01.contoso.com:5061;transport=tls"`,
/// `dns: { server: "127.0.0.1:5353", name: …, type: SRV }`,
/// `client_view: { resolver: "10.1.0.53:53", srv: _sipinternaltls._tcp.contoso.com }`.
public enum ProbeTarget: Sendable, Hashable, CustomStringConvertible {
    case tcp(HostPort)
    case tls(TLSTarget)
    case http(HTTPTarget)
    case sipOptions(SIPTarget)
    case dns(DNSTarget)
    case clientView(ClientViewTarget)

    /// The probe kind as the topology spells it.
    public var kind: String {
        switch self {
        case .tcp: "tcp"
        case .tls: "tls"
        case .http: "http"
        case .sipOptions: "sip_options"
        case .dns: "dns"
        case .clientView: "client_view"
        }
    }

    /// The target as an operator reads it in a table.
    public var description: String {
        switch self {
        case .tcp(let address): address.description
        case .tls(let target): target.description
        case .http(let target): target.url
        case .sipOptions(let target): target.uri
        case .dns(let target): target.description
        case .clientView(let target): target.description
        }
    }

    /// Parses the one-string forms: `tcp`, `tls`, `http` and `sip_options`. A `dns` target has
    /// several fields: build it with `DNSTarget(server:name:type:)`.
    public static func parse(kind: String, _ text: String) throws -> ProbeTarget {
        switch kind {
        case "tcp": return .tcp(try HostPort(parsing: text))
        case "tls": return .tls(try TLSTarget(parsing: text))
        case "http": return .http(try HTTPTarget(url: text))
        case "sip_options", "sip-options", "sip": return .sipOptions(try SIPTarget(parsing: text))
        default:
            throw ProbeError(.badTarget, "unknown probe kind \"\(kind)\" (tcp, tls, http, sip_options, dns)")
        }
    }
}

/// A TLS endpoint; `serverName` (SNI and the name the certificate must carry) defaults to the host.
public struct TLSTarget: Sendable, Hashable, CustomStringConvertible {
    public var address: HostPort
    public var serverName: String?

    public init(address: HostPort, serverName: String? = nil) {
        self.address = address
        self.serverName = serverName
    }

    public init(parsing text: String, serverName: String? = nil) throws {
        self.init(address: try HostPort(parsing: text, defaultPort: 443), serverName: serverName)
    }

    /// The name the certificate is checked against.
    public var expectedName: String { serverName ?? address.host }

    public var description: String {
        if let serverName, serverName != address.host { return "\(address) (\(serverName))" }
        return address.description
    }
}

/// An HTTP(S) URL; up when the status is one of `expectStatus` (any 2xx when empty) and the body
/// contains `bodyMatch` when given.
public struct HTTPTarget: Sendable, Hashable {
    public var url: String
    public var expectStatus: Set<Int>
    public var bodyMatch: String?

    public init(url: String, expectStatus: Set<Int> = [], bodyMatch: String? = nil) throws {
        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), url.count > 8 else {
            throw ProbeError(.badTarget, "bad HTTP URL \"\(url)\" (http:// or https://)")
        }
        self.url = url
        self.expectStatus = expectStatus
        self.bodyMatch = bodyMatch
    }

    func accepts(status: Int) -> Bool {
        expectStatus.isEmpty ? (200..<300).contains(status) : expectStatus.contains(status)
    }
}

/// A SIP transport for OPTIONS.
public enum SIPTransport: String, Sendable, Hashable, Codable {
    case udp = "UDP"
    case tcp = "TCP"
    case tls = "TLS"
}

/// A SIP URI to send OPTIONS to: `sip:host[:port][;transport=udp|tcp|tls]` or `sips:host[:port]`.
/// The default port is 5060 (5061 over TLS); the default transport UDP (TLS for `sips:`).
public struct SIPTarget: Sendable, Hashable {
    public var uri: String
    public var address: HostPort
    public var transport: SIPTransport

    public init(parsing text: String) throws {
        let uri = text.trimmingWhitespace()
        let lower = uri.lowercased()
        let secure: Bool
        let rest: Substring
        if lower.hasPrefix("sips:") {
            secure = true
            rest = uri.dropFirst(5)
        } else if lower.hasPrefix("sip:") {
            secure = false
            rest = uri.dropFirst(4)
        } else {
            throw ProbeError(.badTarget, "bad SIP URI \"\(text)\" (sip:host:port;transport=tls)")
        }
        // user@host:port;params?headers — the IPv6 brackets hold no ';' '?' or '@'.
        var hostPart = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let parameters = hostPart.split(separator: ";", omittingEmptySubsequences: false)
        hostPart = parameters[0]
        if let at = hostPart.lastIndex(of: "@") { hostPart = hostPart[hostPart.index(after: at)...] }
        var transport: SIPTransport = secure ? .tls : .udp
        for parameter in parameters.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].lowercased() == "transport" else { continue }
            switch pair[1].lowercased() {
            case "udp" where !secure: transport = .udp
            case "tcp" where !secure: transport = .tcp
            case "tls": transport = .tls
            case "tcp" where secure: transport = .tls  // sips over tcp is TLS
            default:
                throw ProbeError(.badTarget, "unsupported transport \"\(pair[1])\" in \"\(text)\" (udp, tcp, tls)")
            }
        }
        guard !hostPart.isEmpty else { throw ProbeError(.badTarget, "no host in SIP URI \"\(text)\"") }
        let address = try HostPort(parsing: String(hostPart), defaultPort: transport == .tls ? 5061 : 5060)
        self.uri = uri
        self.address = address
        self.transport = transport
    }
}

/// A DNS record type the `dns` probe can ask for.
public enum DNSRecordType: String, Sendable, Hashable, Codable, CaseIterable {
    case A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR

    public var code: UInt16 {
        switch self {
        case .A: 1
        case .NS: 2
        case .CNAME: 5
        case .SOA: 6
        case .PTR: 12
        case .MX: 15
        case .TXT: 16
        case .AAAA: 28
        case .SRV: 33
        case .NAPTR: 35
        }
    }

    public init(parsing text: String) throws {
        guard let type = DNSRecordType(rawValue: text.uppercased()) else {
            let known = DNSRecordType.allCases.map(\.rawValue).joined(separator: ", ")
            throw ProbeError(.badTarget, "unknown DNS record type \"\(text)\" (\(known))")
        }
        self = type
    }
}

/// An authoritative answer for `name`/`type` expected from `server` (port 53 unless given).
public struct DNSTarget: Sendable, Hashable, CustomStringConvertible {
    public var server: HostPort
    public var name: String
    public var type: DNSRecordType

    public init(server: HostPort, name: String, type: DNSRecordType) {
        self.server = server
        self.name = name
        self.type = type
    }

    public init(server: String, name: String, type: String) throws {
        let trimmedName = name.trimmingWhitespace()
        guard !trimmedName.isEmpty, trimmedName.utf8.count <= 253 else {
            throw ProbeError(.badTarget, "bad DNS name \"\(name)\"")
        }
        for label in trimmedName.split(separator: ".") where label.utf8.count > 63 {
            throw ProbeError(.badTarget, "DNS label \"\(label)\" longer than 63 bytes in \"\(name)\"")
        }
        self.init(
            server: try HostPort(parsing: server, defaultPort: 53), name: trimmedName,
            type: try DNSRecordType(parsing: type))
    }

    public var description: String { "\(name) \(type.rawValue) @\(server)" }
}

/// What a client sees: the SRV record `srv` through the caching resolver `resolver` (recursion
/// desired, so the answer comes from its cache until the TTL runs out), then the chosen target's
/// address through the same resolver, then SIP OPTIONS to that address and port: over TLS for
/// `_sipinternaltls._tcp` and `_sips._tcp`, over TCP for `_sip._tcp`.
public struct ClientViewTarget: Sendable, Hashable, CustomStringConvertible {
    public var resolver: HostPort
    /// The SRV owner name, absolute with a trailing dot.
    public var srv: String
    public var transport: SIPTransport
    /// Which site each SRV target belongs to (absolute lowercased host name → `primary` or
    /// `secondary`), from the topology's records: the probe passes only when the target it
    /// reached belongs to its own site. Empty: any target that answers passes.
    public var sites: [String: ProbeSite]

    public init(resolver: HostPort, srv: String, sites: [String: ProbeSite] = [:]) throws {
        let name = srv.trimmingWhitespace()
        let lower = name.lowercased()
        guard !name.isEmpty, name.utf8.count <= 253 else { throw ProbeError(.badTarget, "bad SRV name \"\(srv)\"") }
        if lower.hasPrefix("_sipinternaltls._tcp.") || lower.hasPrefix("_sips._tcp.") {
            transport = .tls
        } else if lower.hasPrefix("_sip._tcp.") {
            transport = .tcp
        } else {
            throw ProbeError(
                .badTarget,
                "client_view.srv \"\(srv)\" is not a SIP SRV name (_sipinternaltls._tcp.DOMAIN, _sip._tcp.DOMAIN)")
        }
        self.resolver = resolver
        self.srv = name.hasSuffix(".") ? name : name + "."
        var normalized: [String: ProbeSite] = [:]
        for (host, site) in sites { normalized[Self.key(host)] = site }
        self.sites = normalized
    }

    public init(resolver: String, srv: String, sites: [String: ProbeSite] = [:]) throws {
        try self.init(resolver: try HostPort(parsing: resolver, defaultPort: 53), srv: srv, sites: sites)
    }

    /// A host name as `sites` keys it: lowercased, absolute.
    public static func key(_ host: String) -> String {
        let lower = host.lowercased()
        return lower.hasSuffix(".") ? lower : lower + "."
    }

    public var description: String { "\(srv) SRV via \(resolver)" }
}
