extension ProbeRunner {
    /// Asks `target.server` for `target.name`/`target.type` over UDP (resent every second until
    /// the deadline), and over TCP when the answer is truncated. Up only for an authoritative
    /// NOERROR answer holding at least one record of the type.
    static func dnsAttempt(_ target: DNSTarget, deadline: ContinuousClock.Instant) throws -> Attempt {
        let query = DNSQuery(name: target.name, type: target.type)
        let socket = try ProbeSocket.connectUDP(target.server, deadline: deadline)
        var answer: DNSAnswer?
        var nextSend = ContinuousClock.now
        while answer == nil {
            guard ContinuousClock.now < deadline else {
                throw ProbeFailure("DNS server \(socket.peer): no answer within the timeout")
            }
            do {
                if ContinuousClock.now >= nextSend {
                    try socket.send(query.encoded(), deadline: deadline)
                    nextSend = ContinuousClock.now + .seconds(1)
                }
                guard let datagram = try socket.receive(deadline: min(nextSend, deadline)), !datagram.isEmpty else {
                    continue
                }
                let parsed = try DNSAnswer.parse(datagram, for: query)
                if parsed.id == query.id { answer = parsed }
            } catch let failure as ProbeFailure where failure.reason.contains("refused") {
                throw ProbeFailure("DNS server \(socket.peer): connection refused (nothing listening)")
            }
        }
        guard var answer else { throw ProbeFailure("DNS server \(socket.peer): no answer") }
        if answer.truncated { answer = try dnsOverTCP(query, target: target, deadline: deadline) }
        return judge(answer, target: target, server: socket.peer)
    }

    private static func dnsOverTCP(_ query: DNSQuery, target: DNSTarget, deadline: ContinuousClock.Instant) throws
        -> DNSAnswer
    {
        let socket = try ProbeSocket.connectTCP(target.server, deadline: deadline)
        let message = query.encoded()
        try socket.send([UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message, deadline: deadline)
        var buffer: [UInt8] = []
        while true {
            if buffer.count >= 2 {
                let length = Int(buffer[0]) << 8 | Int(buffer[1])
                if buffer.count >= 2 + length {
                    return try DNSAnswer.parse(Array(buffer[2..<(2 + length)]), for: query)
                }
            }
            guard let more = try socket.receive(deadline: deadline) else {
                throw ProbeFailure("DNS server \(socket.peer) over TCP: no answer within the timeout")
            }
            guard !more.isEmpty else { throw ProbeFailure("DNS server \(socket.peer) over TCP: connection closed") }
            buffer += more
        }
    }

    private static func judge(_ answer: DNSAnswer, target: DNSTarget, server: String) -> Attempt {
        let question = "\(target.name) \(target.type.rawValue)"
        guard answer.rcode == 0 else { return Attempt(.down, "\(answer.rcodeName) for \(question) from \(server)") }
        guard answer.authoritative else {
            return Attempt(.down, "answer for \(question) from \(server) is not authoritative")
        }
        guard let first = answer.records.first else {
            return Attempt(.down, "no \(target.type.rawValue) record for \(target.name) at \(server)")
        }
        let more = answer.records.count > 1 ? " (+\(answer.records.count - 1) more)" : ""
        return Attempt(.up, "\(target.type.rawValue) \(first)\(more), authoritative from \(server)")
    }
}
