/// A DNS response code (RCODE), with the names operators see in `dig`.
public struct DNSResponseCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible, Encodable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = Self(rawValue: 0)
    public static let formatError = Self(rawValue: 1)
    public static let serverFailure = Self(rawValue: 2)
    public static let nxDomain = Self(rawValue: 3)
    public static let notImplemented = Self(rawValue: 4)
    public static let refused = Self(rawValue: 5)
    public static let yxDomain = Self(rawValue: 6)
    public static let yxRRset = Self(rawValue: 7)
    public static let nxRRset = Self(rawValue: 8)
    public static let notAuth = Self(rawValue: 9)
    public static let notZone = Self(rawValue: 10)
    // TSIG errors (RFC 8945), carried in the TSIG record rather than the header.
    public static let badSignature = Self(rawValue: 16)
    public static let badKey = Self(rawValue: 17)
    public static let badTime = Self(rawValue: 18)
    public static let badTruncation = Self(rawValue: 22)

    public var description: String {
        switch rawValue {
        case 0: "NOERROR"
        case 1: "FORMERR"
        case 2: "SERVFAIL"
        case 3: "NXDOMAIN"
        case 4: "NOTIMP"
        case 5: "REFUSED"
        case 6: "YXDOMAIN"
        case 7: "YXRRSET"
        case 8: "NXRRSET"
        case 9: "NOTAUTH"
        case 10: "NOTZONE"
        case 16: "BADSIG"
        case 17: "BADKEY"
        case 18: "BADTIME"
        case 22: "BADTRUNC"
        default: "RCODE\(rawValue)"
        }
    }

    /// Encodes as its name ("NOERROR", "NXRRSET").
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
