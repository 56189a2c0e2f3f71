import StandbyDNS

extension ProbeRunner {
    /// Asks `target.server` for `target.name`/`target.type` through StandbyDNS (ldns: UDP, TCP
    /// when truncated, a fresh socket per attempt). Up only for an authoritative NOERROR answer
    /// holding at least one record of the type.
    func dnsAttempt(_ target: DNSTarget, deadline: ContinuousClock.Instant) async -> Attempt {
        let remaining = max(ContinuousClock.now.duration(to: deadline), .milliseconds(1))
        let server = DNSServer(host: target.server.host, port: target.server.port)
        let question = "\(target.name) \(target.type.rawValue)"
        let answer: RecordSetAnswer
        do {
            answer = try await DNSClient(timeout: remaining, logger: logger).query(
                server, name: target.name, type: target.type.rawValue)
        } catch {
            return Attempt(.down, "\(question) from \(target.server): \(error)")
        }
        guard answer.rcode == .noError else {
            return Attempt(.down, "\(answer.rcode) for \(question) from \(target.server)")
        }
        guard answer.authoritative else {
            return Attempt(.down, "answer for \(question) from \(target.server) is not authoritative")
        }
        guard let first = answer.rdata.first else {
            return Attempt(.down, "no \(target.type.rawValue) record for \(target.name) at \(target.server)")
        }
        let more = answer.rdata.count > 1 ? " (+\(answer.rdata.count - 1) more)" : ""
        return Attempt(.up, "\(target.type.rawValue) \(first)\(more), authoritative from \(target.server)")
    }
}
