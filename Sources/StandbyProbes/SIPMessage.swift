/// An OPTIONS request as RFC 3261 section 11 describes it, with every mandatory header
/// (section 8.1.1): Via with a z9hG4bK branch and rport (RFC 3581, so the answer comes back to the
/// port it was sent from), Max-Forwards, From with a tag, To, Call-ID, CSeq, Contact and
/// Content-Length.
struct SIPOptionsRequest {
    var requestURI: String
    var transport: SIPTransport
    var local: HostPort
    var branch: String
    var callID: String
    var fromTag: String
    var sequence: Int = 1

    init(target: SIPTarget, local: HostPort) {
        requestURI = target.uri
        transport = target.transport
        self.local = local
        branch = "z9hG4bK" + Self.token(16)
        callID = Self.token(20) + "@standby"
        fromTag = Self.token(10)
    }

    func encoded() -> [UInt8] {
        let sentBy = local.description
        let toURI = requestURI.split(separator: ";", maxSplits: 1)[0]
        let contactTransport = transport == .udp ? "" : ";transport=\(transport.rawValue.lowercased())"
        let lines = [
            "OPTIONS \(requestURI) SIP/2.0",
            "Via: SIP/2.0/\(transport.rawValue) \(sentBy);rport;branch=\(branch)",
            "Max-Forwards: 70",
            "From: <sip:standby@\(local.uriHost)>;tag=\(fromTag)",
            "To: <\(toURI)>",
            "Call-ID: \(callID)",
            "CSeq: \(sequence) OPTIONS",
            "Contact: <sip:standby@\(sentBy)\(contactTransport)>",
            "Accept: application/sdp",
            "User-Agent: standby-probe",
            "Content-Length: 0",
        ]
        return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    private static func token(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<count).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
    }
}

/// A SIP response: its status line and headers. Bodies are skipped.
struct SIPResponse {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]

    /// The value of the first header called `name` (or its compact form), case-insensitive.
    func header(_ name: String, compact: String? = nil) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower || $0.name.lowercased() == compact }?.value
    }

    /// The branch parameter of the topmost Via.
    var topBranch: String? {
        guard let via = header("Via", compact: "v") else { return nil }
        let top = via.split(separator: ",", maxSplits: 1)[0]
        for parameter in top.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0].trimmingWhitespace().lowercased() == "branch" {
                return pair[1].trimmingWhitespace()
            }
        }
        return nil
    }

    enum Parse {
        /// A whole response, and how many bytes of the input it used.
        case complete(SIPResponse, consumed: Int)
        /// More bytes are needed (stream transports only).
        case incomplete
    }

    /// The longest header block accepted; a peer sending more without the blank line is not SIP.
    static let maximumHeaderBytes = 32_768

    /// Parses one response from the front of `bytes`. Throws when the bytes cannot be a SIP
    /// response, with the reason an operator needs ("not a SIP status line: HTTP/1.1 400 …").
    static func parse(_ bytes: [UInt8]) throws -> Parse {
        // RFC 3261 7.5: stream peers may send CRLF keep-alives between messages.
        var start = 0
        while start + 1 < bytes.count, bytes[start] == 13, bytes[start + 1] == 10 { start += 2 }
        if start < bytes.count, let first = bytes.dropFirst(start).first, first != UInt8(ascii: "S") {
            throw ProbeFailure("malformed SIP response: \(printable(bytes[start...]))")
        }
        guard let end = headerEnd(bytes, from: start) else {
            if bytes.count - start > maximumHeaderBytes {
                throw ProbeFailure("malformed SIP response: no end of headers in \(bytes.count) bytes")
            }
            // A partial status line already seen must at least begin like one.
            let seen = bytes[start...].prefix(8)
            if !Array("SIP/2.0 ".utf8).starts(with: seen) {
                throw ProbeFailure("malformed SIP response: \(printable(bytes[start...]))")
            }
            return .incomplete
        }
        let head = String(decoding: bytes[start..<end], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "SIP/2.0", parts[1].count == 3, let status = Int(parts[1]),
            (100...699).contains(status)
        else {
            throw ProbeFailure("malformed SIP response: not a SIP status line: \(printable(statusLine.utf8[...]))")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            if line.first == " " || line.first == "\t", let last = headers.popLast() {
                headers.append((last.name, last.value + " " + line.trimmingWhitespace()))  // folded header
                continue
            }
            guard let colon = line.firstIndex(of: ":") else {
                throw ProbeFailure("malformed SIP response: header without a colon: \(printable(line.utf8[...]))")
            }
            headers.append(
                (
                    String(line[..<colon]).trimmingWhitespace(),
                    String(line[line.index(after: colon)...]).trimmingWhitespace()
                ))
        }
        var response = SIPResponse(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers)
        response.reason = response.reason.trimmingWhitespace()
        var bodyLength = 0
        if let length = response.header("Content-Length", compact: "l") {
            guard let value = Int(length), value >= 0 else {
                throw ProbeFailure("malformed SIP response: bad Content-Length \"\(length)\"")
            }
            bodyLength = value
        }
        let consumed = end + 4 + bodyLength
        if consumed > bytes.count { return .incomplete }
        return .complete(response, consumed: consumed)
    }

    private static func headerEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= start + 4 else { return nil }
        var index = start
        while index + 3 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 {
                return index
            }
            index += 1
        }
        return nil
    }

    /// The first bytes of what the peer sent, safe to print.
    static func printable<S: Sequence<UInt8>>(_ bytes: S) -> String {
        var text = ""
        for byte in bytes.prefix(60) {
            text += (32..<127).contains(byte) ? String(UnicodeScalar(byte)) : "."
        }
        return "\"\(text)\""
    }
}
