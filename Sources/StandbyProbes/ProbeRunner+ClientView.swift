import Foundation
import StandbyBase
import StandbyDNS

/// What a client found when it looked for the pool the way a client does: the SRV record through
/// its caching resolver, the target's address through the same resolver, and the SIP server there.
public struct ClientView: Sendable, Hashable, Codable, CustomStringConvertible {
    public var srv: String
    public var resolver: String
    /// The SRV target the client chose (lowest priority, then highest weight), absolute.
    public var target: String
    public var port: UInt16
    /// The target's IPv4 address as the resolver gave it.
    public var address: String
    /// The SRV record's TTL in the resolver's answer: from a cache, what is left of it.
    public var ttl: UInt32?
    /// Which site's pool the target is (the topology's records say), nil when neither.
    public var site: ProbeSite?
    /// Whether SIP OPTIONS there got a final response the probe accepts.
    public var answered: Bool
    /// The SIP answer, or why there was none.
    public var detail: String

    public var description: String {
        let pool = site.map { " (the \($0.rawValue) pool)" } ?? ""
        let ttlText = ttl.map { ", SRV TTL \($0) s left in the resolver's cache" } ?? ""
        return "\(srv) via \(resolver) → \(target)\(pool) \(address):\(port): \(detail)\(ttlText)"
    }
}

extension ProbeRunner {
    /// Looks at the SIP pool as a client does; throws a `ProbeFailure` when it cannot get as far
    /// as a SIP server (the resolver does not answer, no SRV record, no address).
    public func clientView(
        _ target: ClientViewTarget, options: ProbeOptions = ProbeOptions(), timeout: Duration = .seconds(5)
    ) async -> Result<ClientView, ClientViewFailure> {
        let deadline = ContinuousClock.now + timeout
        let resolver = DNSServer(host: target.resolver.host, port: target.resolver.port)
        let client = DNSClient(
            timeout: max(ContinuousClock.now.duration(to: deadline), .milliseconds(1)), logger: logger)
        let srvAnswer: RecordSetAnswer
        do {
            srvAnswer = try await client.query(resolver, name: target.srv, type: "SRV", recursive: true)
        } catch {
            return .failure(ClientViewFailure("\(target.srv) SRV via \(target.resolver): \(error.message)"))
        }
        guard srvAnswer.rcode == .noError else {
            return .failure(ClientViewFailure("\(srvAnswer.rcode) for \(target.srv) SRV via \(target.resolver)"))
        }
        let records = srvAnswer.rdata.compactMap(SRVValue.init(presentation:))
        guard let chosen = SRVValue.preferred(records) else {
            return .failure(ClientViewFailure("no SRV record for \(target.srv) via \(target.resolver)"))
        }
        let addressAnswer: RecordSetAnswer
        do {
            let left = max(ContinuousClock.now.duration(to: deadline), .milliseconds(1))
            addressAnswer = try await DNSClient(timeout: left, logger: logger).query(
                resolver, name: chosen.target, type: "A", recursive: true)
        } catch {
            return .failure(ClientViewFailure("\(chosen.target) A via \(target.resolver): \(error.message)"))
        }
        guard let address = addressAnswer.rdata.first else {
            return .failure(
                ClientViewFailure(
                    "no address for \(chosen.target) via \(target.resolver) (\(addressAnswer.rcode))"))
        }
        let transport = target.transport == .tls ? "tls" : "tcp"
        let host = chosen.target.hasSuffix(".") ? String(chosen.target.dropLast()) : chosen.target
        let sipTarget: SIPTarget
        do {
            sipTarget = try SIPTarget(parsing: "sip:\(host):\(chosen.port);transport=\(transport)")
        } catch {
            return .failure(ClientViewFailure("SRV target \(chosen.target):\(chosen.port): \(error)"))
        }
        let connectTo = HostPort(host: address, port: chosen.port)
        let attempt = await Blocking.run(
            name: "standby.probe", deadline: deadline + .milliseconds(100),
            onTimeout: { Attempt(.down, "no SIP answer from \(connectTo) within \(timeout)") },
            {
                do {
                    return try Self.sipAttempt(sipTarget, options: options, deadline: deadline, connectTo: connectTo)
                } catch let failure as ProbeFailure {
                    return Attempt(.down, failure.reason)
                } catch {
                    return Attempt(.down, "\(error)")
                }
            })
        return .success(
            ClientView(
                srv: target.srv, resolver: target.resolver.description, target: chosen.target, port: chosen.port,
                address: address, ttl: srvAnswer.ttl, site: target.sites[ClientViewTarget.key(chosen.target)],
                answered: attempt.outcome.isSuccess, detail: attempt.detail))
    }

    /// One `client_view` probe attempt: up when the pool the client reached answered and is the
    /// probe's own site's.
    func clientViewAttempt(_ probe: Probe, _ target: ClientViewTarget, deadline: ContinuousClock.Instant) async
        -> Attempt
    {
        let left = max(ContinuousClock.now.duration(to: deadline), .milliseconds(1))
        switch await clientView(target, options: probe.options, timeout: left) {
        case .failure(let failure):
            return Attempt(.down, failure.reason)
        case .success(let view):
            guard view.answered else { return Attempt(.down, view.description) }
            if !target.sites.isEmpty && view.site != probe.site {
                let found = view.site.map { "the \($0.rawValue) pool" } ?? "neither site's pool"
                return Attempt(.down, "clients still reach \(found): \(view.description)")
            }
            return Attempt(.up, view.description)
        }
    }
}

/// Why the client view stopped before a SIP server: in plain words.
public struct ClientViewFailure: Error, Sendable, CustomStringConvertible {
    public var reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// One SRV record's RDATA: `priority weight port target`.
struct SRVValue: Sendable, Hashable {
    var priority: Int
    var weight: Int
    var port: UInt16
    var target: String

    init?(presentation: String) {
        let fields = presentation.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 4, let priority = Int(fields[0]), let weight = Int(fields[1]),
            let port = UInt16(fields[2]), port > 0, fields[3] != "."
        else { return nil }
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = String(fields[3])
    }

    /// What a client picks: the lowest priority; among those, the highest weight, then by name
    /// (RFC 2782 picks by weighted chance; a probe must be repeatable).
    static func preferred(_ values: [SRVValue]) -> SRVValue? {
        values.min { a, b in (a.priority, -a.weight, a.target) < (b.priority, -b.weight, b.target) }
    }
}
