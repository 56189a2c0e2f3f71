#if canImport(Glibc)
    import Glibc
#endif

extension ProbeRunner {
    /// RFC 3261 timer values: T1 (round-trip estimate) and T2 (largest non-INVITE retransmit interval).
    static let sipT1: Duration = .milliseconds(500)
    static let sipT2: Duration = .seconds(4)

    /// One OPTIONS transaction (RFC 3261 17.1.2, non-INVITE client). Over UDP the request is
    /// retransmitted at T1, doubling up to T2 (timer E, the non-INVITE form of timer A), and
    /// at T2 once a provisional response came; over TCP and TLS it is sent once. Provisional
    /// responses are skipped; the final one decides. `connectTo` is where to connect when the
    /// URI's host was resolved already (the client view asks its resolver, not the system's); the
    /// URI's host stays the name TLS checks the certificate against.
    static func sipAttempt(
        _ target: SIPTarget, options: ProbeOptions, deadline: ContinuousClock.Instant, connectTo: HostPort? = nil
    ) throws -> Attempt {
        switch target.transport {
        case .udp:
            return try sipOverUDP(target, options: options, deadline: deadline, connectTo: connectTo)
        case .tcp, .tls:
            return try sipOverStream(target, options: options, deadline: deadline, connectTo: connectTo)
        }
    }

    private static func sipOverUDP(
        _ target: SIPTarget, options: ProbeOptions, deadline: ContinuousClock.Instant, connectTo: HostPort?
    ) throws -> Attempt {
        let socket = try ProbeSocket.connectUDP(connectTo ?? target.address, deadline: deadline)
        guard let local = socket.localAddress() else { throw ProbeFailure("cannot read the local UDP address") }
        let request = SIPOptionsRequest(target: target, local: local)
        let bytes = request.encoded()
        var interval = sipT1
        var nextSend = ContinuousClock.now
        var sent = 0
        var provisional = false
        while ContinuousClock.now < deadline {
            if ContinuousClock.now >= nextSend {
                do {
                    try socket.send(bytes, deadline: deadline)
                } catch let failure as ProbeFailure where failure.reason.contains("refused") {
                    throw ProbeFailure("SIP over UDP to \(socket.peer): connection refused (nothing listening)")
                }
                sent += 1
                nextSend = ContinuousClock.now + interval
                interval = provisional ? sipT2 : min(interval * 2, sipT2)
            }
            let datagram: [UInt8]?
            do {
                datagram = try socket.receive(deadline: min(nextSend, deadline))
            } catch let failure as ProbeFailure where failure.reason.contains("refused") {
                throw ProbeFailure("SIP over UDP to \(socket.peer): connection refused (nothing listening)")
            }
            guard let datagram, !datagram.isEmpty else { continue }
            guard case .complete(let response, _) = try SIPResponse.parse(datagram) else {
                throw ProbeFailure("malformed SIP response: incomplete datagram of \(datagram.count) bytes")
            }
            guard response.topBranch == request.branch else { continue }  // a stray answer to someone else
            if response.status < 200 {
                provisional = true
                interval = sipT2
                continue
            }
            return verdict(response, over: target.transport, from: socket.peer, options: options, sent: sent)
        }
        throw ProbeFailure(
            "SIP over UDP to \(socket.peer): no final response within the timeout (\(sent) transmissions)")
    }

    private static func sipOverStream(
        _ target: SIPTarget, options: ProbeOptions, deadline: ContinuousClock.Instant, connectTo: HostPort?
    ) throws -> Attempt {
        let socket = try ProbeSocket.connectTCP(connectTo ?? target.address, deadline: deadline)
        guard let local = socket.localAddress() else { throw ProbeFailure("cannot read the local TCP address") }
        let stream: any ProbeStream
        if target.transport == .tls {
            let session = try TLSSession(
                socket: socket, serverName: target.address.host, caFile: options.caFile, deadline: deadline)
            let problems = session.problems(expectedName: target.address.host, verifyChain: options.verifyChain)
            if !problems.isEmpty { throw ProbeFailure("SIP over TLS: " + problems.joined(separator: "; ")) }
            stream = session
        } else {
            stream = socket
        }
        let request = SIPOptionsRequest(target: target, local: local)
        try stream.send(request.encoded(), deadline: deadline)
        var buffer: [UInt8] = []
        while true {
            switch try SIPResponse.parse(buffer) {
            case .complete(let response, let consumed):
                buffer.removeFirst(consumed)
                guard response.topBranch == request.branch else {
                    throw ProbeFailure(
                        "malformed SIP response: Via branch \(response.topBranch ?? "missing") does not match the request"
                    )
                }
                if response.status < 200 { continue }
                return verdict(response, over: target.transport, from: socket.peer, options: options, sent: 1)
            case .incomplete:
                guard let more = try stream.receive(maximum: 16_384, deadline: deadline) else {
                    throw ProbeFailure(
                        "SIP over \(target.transport.rawValue) to \(socket.peer): no final response within the timeout")
                }
                guard !more.isEmpty else {
                    throw ProbeFailure(
                        "SIP over \(target.transport.rawValue) to \(socket.peer): the server closed the connection"
                            + " before a final response")
                }
                buffer += more
            }
        }
    }

    private static func verdict(
        _ response: SIPResponse, over transport: SIPTransport, from peer: String, options: ProbeOptions, sent: Int
    ) -> Attempt {
        let answer = "\(response.status) \(response.reason) over \(transport.rawValue) from \(peer)"
        let retransmissions = sent > 1 ? " after \(sent - 1) retransmissions" : ""
        if options.sipUpStatuses.contains(response.status) { return Attempt(.up, answer + retransmissions) }
        return Attempt(.down, "SIP " + answer)
    }
}
