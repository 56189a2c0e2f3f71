import Foundation

/// One authoritative server, by address (or host name) and port.
public struct DNSServer: Sendable, Hashable, CustomStringConvertible, Encodable {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16 = 53) {
        self.host = host
        self.port = port
    }

    /// Parses "10.0.0.53", "10.1.0.53:53", "[::1]:5353", "::1" and "ns1.example.com:5353".
    public init(parsing text: String) throws(DNSError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        func bad(_ why: String) -> DNSError {
            DNSError(.invalidInput, "'\(text)' is not a DNS server address: \(why)")
        }
        func port(_ digits: Substring) throws(DNSError) -> UInt16 {
            guard let value = UInt16(digits), value > 0 else { throw bad("the port must be 1-65535") }
            return value
        }
        guard !trimmed.isEmpty else { throw bad("it is empty") }
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else { throw bad("a '[' without ']'") }
            let host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            guard !host.isEmpty else { throw bad("no address between the brackets") }
            let rest = trimmed[trimmed.index(after: close)...]
            if rest.isEmpty {
                self.init(host: String(host))
            } else {
                guard rest.hasPrefix(":") else { throw bad("expected ':port' after ']'") }
                self.init(host: String(host), port: try port(rest.dropFirst()))
            }
            return
        }
        let colons = trimmed.filter { $0 == ":" }.count
        if colons == 0 {
            self.init(host: trimmed)
        } else if colons == 1, let colon = trimmed.firstIndex(of: ":") {
            let host = trimmed[..<colon]
            guard !host.isEmpty else { throw bad("no host before ':'") }
            self.init(host: String(host), port: try port(trimmed[trimmed.index(after: colon)...]))
        } else {
            // Several colons and no brackets: a bare IPv6 address on the default port.
            self.init(host: trimmed)
        }
    }

    public var description: String {
        let shown = host.contains(":") ? "[\(host)]" : host
        return port == 53 ? shown : "\(shown):\(port)"
    }

    /// Encodes as its description ("10.0.0.53", "[::1]:5353").
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
