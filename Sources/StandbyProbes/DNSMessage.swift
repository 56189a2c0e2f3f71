/// The smallest DNS client a `dns` probe needs (RFC 1035): one question, recursion not desired
/// (the probe asks the authoritative server itself), and an answer parser that reads the
/// header flags and the answer records of the asked type.
struct DNSQuery {
    var id: UInt16
    var name: String
    var type: DNSRecordType

    init(name: String, type: DNSRecordType) {
        id = UInt16.random(in: 0...UInt16.max)
        self.name = name
        self.type = type
    }

    func encoded() -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes.append(contentsOf: label.utf8)
        }
        bytes.append(0)
        bytes += [UInt8(type.code >> 8), UInt8(type.code & 0xff), 0, 1]
        return bytes
    }
}

struct DNSAnswer {
    var id: UInt16
    var authoritative: Bool
    var truncated: Bool
    var rcode: Int
    /// The answer records of the asked type, as presentation text ("0 0 5061 pool01.contoso.com.").
    var records: [String]

    static let rcodeNames = [
        0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH",
    ]

    var rcodeName: String { Self.rcodeNames[rcode] ?? "RCODE \(rcode)" }

    /// Parses a response to `query`; throws on a malformed message.
    static func parse(_ bytes: [UInt8], for query: DNSQuery) throws -> DNSAnswer {
        var reader = Reader(bytes: bytes)
        let id = try reader.u16()
        let flags = try reader.u16()
        let questions = try reader.u16()
        let answers = try reader.u16()
        _ = try reader.u16()
        _ = try reader.u16()
        guard flags & 0x8000 != 0 else { throw ProbeFailure("DNS: the server sent a query, not a response") }
        for _ in 0..<questions {
            _ = try reader.name()
            _ = try reader.u16()
            _ = try reader.u16()
        }
        var records: [String] = []
        for _ in 0..<answers {
            _ = try reader.name()
            let type = try reader.u16()
            _ = try reader.u16()
            _ = try reader.u32()
            let length = Int(try reader.u16())
            let end = reader.offset + length
            guard end <= bytes.count else { throw ProbeFailure("DNS: truncated record data") }
            if type == query.type.code { records.append(try reader.rdata(type: query.type, end: end)) }
            reader.offset = end
        }
        return DNSAnswer(
            id: id, authoritative: flags & 0x0400 != 0, truncated: flags & 0x0200 != 0, rcode: Int(flags & 0x000f),
            records: records)
    }

    struct Reader {
        var bytes: [UInt8]
        var offset = 0

        mutating func u8() throws -> UInt8 {
            guard offset < bytes.count else { throw ProbeFailure("DNS: truncated message") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func u16() throws -> UInt16 { UInt16(try u8()) << 8 | UInt16(try u8()) }

        mutating func u32() throws -> UInt32 { UInt32(try u16()) << 16 | UInt32(try u16()) }

        /// A domain name, following compression pointers (at most 32 of them).
        mutating func name() throws -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            var jumps = 0
            while true {
                guard position < bytes.count else { throw ProbeFailure("DNS: truncated name") }
                let length = Int(bytes[position])
                if length == 0 {
                    position += 1
                    break
                }
                if length & 0xc0 == 0xc0 {
                    guard position + 1 < bytes.count, jumps < 32 else { throw ProbeFailure("DNS: bad name pointer") }
                    let target = (length & 0x3f) << 8 | Int(bytes[position + 1])
                    if !jumped { offset = position + 2 }
                    jumped = true
                    jumps += 1
                    position = target
                    continue
                }
                guard position + 1 + length <= bytes.count else { throw ProbeFailure("DNS: truncated label") }
                labels.append(String(decoding: bytes[(position + 1)..<(position + 1 + length)], as: UTF8.self))
                position += 1 + length
            }
            if !jumped { offset = position }
            return labels.joined(separator: ".") + "."
        }

        mutating func rdata(type: DNSRecordType, end: Int) throws -> String {
            switch type {
            case .A where end - offset == 4:
                return bytes[offset..<end].map(String.init).joined(separator: ".")
            case .AAAA where end - offset == 16:
                let slice = Array(bytes[offset..<end])
                return stride(from: 0, to: 16, by: 2).map {
                    String(UInt16(slice[$0]) << 8 | UInt16(slice[$0 + 1]), radix: 16)
                }
                .joined(separator: ":")
            case .SRV:
                let priority = try u16()
                let weight = try u16()
                let port = try u16()
                return "\(priority) \(weight) \(port) \(try name())"
            case .MX:
                let preference = try u16()
                return "\(preference) \(try name())"
            case .NS, .CNAME, .PTR:
                return try name()
            default:
                return "\(end - offset) bytes"
            }
        }
    }
}
