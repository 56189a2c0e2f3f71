/// A host and a port as written in a topology: `host:port`, `[v6]:port`, `127.0.0.1:5060`.
public struct HostPort: Sendable, Hashable, Codable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[ipv6]:port`, or — when `defaultPort` is given — a bare `host`,
    /// `[ipv6]` or unbracketed IPv6 address.
    public init(parsing text: String, defaultPort: UInt16? = nil) throws {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw ProbeError(.badTarget, "empty host in \"\(text)\"") }
        var host: Substring
        var portText: Substring?
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else {
                throw ProbeError(.badTarget, "unterminated IPv6 bracket in \"\(text)\"")
            }
            host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            let rest = trimmed[trimmed.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else {
                    throw ProbeError(.badTarget, "expected :port after ] in \"\(text)\"")
                }
                portText = rest.dropFirst()
            }
        } else if trimmed.filter({ $0 == ":" }).count > 1 {
            host = Substring(trimmed)  // an IPv6 address without brackets has no port
        } else if let colon = trimmed.lastIndex(of: ":") {
            host = trimmed[..<colon]
            portText = trimmed[trimmed.index(after: colon)...]
        } else {
            host = Substring(trimmed)
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else {
            throw ProbeError(.badTarget, "bad host in \"\(text)\"")
        }
        self.host = String(host)
        if let portText {
            guard let port = UInt16(portText), port > 0 else {
                throw ProbeError(.badTarget, "bad port \"\(portText)\" in \"\(text)\" (1-65535)")
            }
            self.port = port
        } else if let defaultPort {
            self.port = defaultPort
        } else {
            throw ProbeError(.badTarget, "missing port in \"\(text)\" (host:port, [ipv6]:port)")
        }
    }

    /// Whether the host is an IPv6 literal (written in brackets with a port).
    public var isIPv6Literal: Bool { host.contains(":") }

    /// The host as it appears in a URI or a `host:port` pair: IPv6 literals in brackets.
    public var uriHost: String { isIPv6Literal ? "[\(host)]" : host }

    public var description: String { "\(uriHost):\(port)" }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

extension String {
    /// A string from a NUL-terminated C buffer filled in place.
    init(nulTerminated buffer: [CChar]) {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
