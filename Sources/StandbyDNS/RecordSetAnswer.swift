import Foundation

/// What one server answered for one record set.
public struct RecordSetAnswer: Sendable, Hashable, CustomStringConvertible, Encodable {
    public let server: DNSServer
    /// Absolute name with a trailing dot.
    public let name: String
    public let type: String
    /// The values in presentation format, sorted; empty when the record set does not exist.
    public let rdata: [String]
    /// The TTL of the record set (the smallest, should they differ); nil when it is empty.
    public let ttl: UInt32?
    /// Whether the answer carried the AA bit: only an authoritative answer counts as served.
    public let authoritative: Bool
    public let rcode: DNSResponseCode
    /// The serial of the zone's SOA on that server, when it was asked for.
    public let soaSerial: UInt32?

    public init(
        server: DNSServer, name: String, type: String, rdata: [String], ttl: UInt32?, authoritative: Bool,
        rcode: DNSResponseCode, soaSerial: UInt32?
    ) {
        self.server = server
        self.name = name
        self.type = type
        self.rdata = rdata
        self.ttl = ttl
        self.authoritative = authoritative
        self.rcode = rcode
        self.soaSerial = soaSerial
    }

    /// Whether this answer is exactly `values` (compared in canonical form) with the AA bit.
    /// `values` may be in any presentation form ldns accepts ("0 0 443 SIP.contoso.com." matches).
    public func holds(_ values: [String]) -> Bool {
        guard authoritative, rcode == .noError || (values.isEmpty && rcode == .nxDomain) else { return false }
        if RecordValues.same(rdata, values) { return true }
        let canonical = values.map { value in (try? LDNS.normalize(rdata: value, type: type, owner: name)) ?? value }
        return RecordValues.same(rdata, canonical)
    }

    public var description: String {
        var text = "\(name) \(type) "
        text += rdata.isEmpty ? "(none)" : "[\(rdata.joined(separator: ", "))]"
        if let ttl { text += " ttl \(ttl)" }
        if rcode != .noError { text += " \(rcode)" }
        if !authoritative { text += " (not authoritative)" }
        return text
    }
}

/// What one server serves now, or served last while being verified.
public struct ServerState: Sendable, CustomStringConvertible, Encodable {
    public let server: DNSServer
    public let records: [RecordSetAnswer]
    public let soaSerial: UInt32?
    /// The last error talking to this server (timeout, connection refused, ...), in plain words.
    public let problem: String?
    /// Whether the server served every target record set authoritatively.
    public let verified: Bool
    /// How long after the update the server was seen serving the target (verification only).
    public let elapsed: Duration?

    public init(
        server: DNSServer, records: [RecordSetAnswer], soaSerial: UInt32?, problem: String?, verified: Bool,
        elapsed: Duration?
    ) {
        self.server = server
        self.records = records
        self.soaSerial = soaSerial
        self.problem = problem
        self.verified = verified
        self.elapsed = elapsed
    }

    enum CodingKeys: String, CodingKey {
        case server, records, soaSerial, problem, verified, elapsedSeconds
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(server, forKey: .server)
        try container.encode(records, forKey: .records)
        try container.encodeIfPresent(soaSerial, forKey: .soaSerial)
        try container.encodeIfPresent(problem, forKey: .problem)
        try container.encode(verified, forKey: .verified)
        try container.encodeIfPresent(elapsed.map(\.seconds), forKey: .elapsedSeconds)
    }

    public var description: String {
        var text = "\(server):"
        if verified { text += " ok" }
        if let elapsed { text += " after \(elapsed.secondsText)" }
        text += " serial " + (soaSerial.map(String.init) ?? "?")
        if !records.isEmpty { text += "; " + records.map(\.description).joined(separator: "; ") }
        if let problem { text += "; " + problem }
        return text
    }
}

enum RecordValues {
    /// Whether two lists of rdata hold the same set of values. Domain names in rdata compare
    /// without regard to case, as servers compare them.
    static func same(_ a: [String], _ b: [String]) -> Bool {
        Set(a.map(key)) == Set(b.map(key))
    }

    static func key(_ rdata: String) -> String { rdata.lowercased() }
}

extension Duration {
    /// The duration in seconds, for JSON.
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }

    /// "0.042 s": wall times in reports and benchmarks.
    var secondsText: String {
        let (seconds, attoseconds) = components
        return String(format: "%.3f s", Double(seconds) + Double(attoseconds) / 1e18)
    }
}
