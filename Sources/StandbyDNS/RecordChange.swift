import Foundation

/// One record set to move from `from` to `to`: a compare-and-swap. `name` is relative to the zone
/// ("_sip._tcp"), "@" for the apex, or absolute with a trailing dot. Values are rdata in
/// presentation format ("0 0 5061 pool01.contoso.com."). An empty `from` means the record set must
/// not exist yet; an empty `to` deletes it. When `from` equals `to`, only the TTL changes.
public struct RecordChange: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var type: String
    public var ttl: UInt32
    public var from: [String]
    public var to: [String]

    public init(name: String, type: String, ttl: UInt32, from: [String], to: [String]) {
        self.name = name
        self.type = type.uppercased()
        self.ttl = ttl
        self.from = from
        self.to = to
    }

    public var description: String {
        "\(name) \(type): [\(from.joined(separator: ", "))] -> [\(to.joined(separator: ", "))] ttl \(ttl)"
    }
}

/// A record set to re-time: keep its values, set its TTL (`prepare --ttl 60`, `prepare --restore`).
public struct RecordTTL: Sendable, Hashable {
    public var name: String
    public var type: String
    public var ttl: UInt32

    public init(name: String, type: String, ttl: UInt32) {
        self.name = name
        self.type = type.uppercased()
        self.ttl = ttl
    }
}

enum DNSName {
    /// The absolute, lower-cased name of `name` in `zone`, with a trailing dot.
    static func absolute(_ name: String, in zone: String) -> String {
        let zoneName = absoluteZone(zone)
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty || trimmed == "@" { return zoneName }
        if trimmed.hasSuffix(".") { return trimmed.lowercased() }
        if zoneName == "." { return trimmed.lowercased() + "." }
        return (trimmed + "." + zoneName).lowercased()
    }

    static func absoluteZone(_ zone: String) -> String {
        let trimmed = zone.trimmingCharacters(in: .whitespaces).lowercased()
        return trimmed.hasSuffix(".") ? trimmed : trimmed + "."
    }
}
