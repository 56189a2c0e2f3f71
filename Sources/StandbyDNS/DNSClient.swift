import CLDNS
import Foundation
import Logging
import StandbyBase

/// Queries and signed updates, one server at a time. Every call opens its own socket (nothing is
/// shared between attempts, so a server that failed once is asked again next time), runs on
/// `Blocking.run` rather than the cooperative pool, and gives up after `timeout`.
public struct DNSClient: Sendable {
    public var timeout: Duration
    public var logger: Logger

    public init(timeout: Duration = .seconds(3), logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    /// The record set `name`/`type` as `server` serves it (`name` absolute, or relative to `zone`),
    /// with the AA bit and the rcode. With `zone`, also the zone's SOA serial (a second query).
    /// Throws only when the server cannot be asked (timeout, connection refused, garbage reply).
    /// `recursive` sets the RD bit: the question a client puts to a caching resolver, which answers
    /// from its cache (not authoritatively, with the TTL left) or asks the authoritative servers.
    public func query(_ server: DNSServer, name: String, type: String, zone: String? = nil, recursive: Bool = false)
        async throws(DNSError) -> RecordSetAnswer
    {
        let absolute = zone.map { DNSName.absolute(name, in: $0) } ?? DNSName.absolute(name, in: ".")
        let zoneName = zone.map(DNSName.absoluteZone)
        let typeName = type.uppercased()
        let deadline = ContinuousClock.now + timeout
        return try await Blocking.run(name: "standby.dns.io") {
            (_: CancellationFlag) throws(DNSError) -> RecordSetAnswer in
            let rrType = try LDNS.type(named: typeName)
            let reply = try Self.ask(server, name: absolute, type: rrType, deadline: deadline, recursive: recursive)
            let answers = reply.answers(name: absolute, type: rrType)
            var serial: UInt32?
            if let zoneName {
                serial = try Self.ask(server, name: zoneName, type: LDNS_RR_TYPE_SOA, deadline: deadline).soaSerial
            }
            return RecordSetAnswer(
                server: server, name: absolute, type: typeName, rdata: answers.map(\.rdata).sorted(),
                ttl: answers.map(\.ttl).min(), authoritative: reply.authoritative,
                rcode: DNSResponseCode(rawValue: UInt16(reply.rcode)), soaSerial: serial)
        }
    }

    /// The SOA serial of `zone` on `server`, or nil when the server does not answer with one.
    public func soaSerial(_ server: DNSServer, zone: String) async throws(DNSError) -> UInt32? {
        let zoneName = DNSName.absoluteZone(zone)
        let deadline = ContinuousClock.now + timeout
        return try await Blocking.run(name: "standby.dns.io") { (_: CancellationFlag) throws(DNSError) -> UInt32? in
            try Self.ask(server, name: zoneName, type: LDNS_RR_TYPE_SOA, deadline: deadline).soaSerial
        }
    }

    /// Blocking: one query over UDP, again over TCP when the reply is truncated.
    static func ask(
        _ server: DNSServer, name: String, type: ldns_rr_type, deadline: ContinuousClock.Instant,
        recursive: Bool = false
    ) throws(DNSError) -> LDNSPacket {
        let query = try LDNSPacket.query(name: name, type: type, recursive: recursive)
        let wire = try query.wire()
        var reply = try LDNSPacket.parse(
            DNSTransport.exchange(wire, with: server, tcp: false, deadline: deadline), from: server)
        if reply.truncated {
            reply = try LDNSPacket.parse(
                DNSTransport.exchange(wire, with: server, tcp: true, deadline: deadline), from: server)
        }
        return reply
    }

    /// Sends an RFC 2136 update of `zone` to `server` over TCP, signed with `key`: every
    /// prerequisite must hold or nothing changes. The reply's TSIG error and its signature are
    /// both checked; any rcode but NOERROR throws, with the server named.
    public func update(
        _ server: DNSServer, zone: String, key: TSIGKey, prerequisites: [Prerequisite], updates: [UpdateOperation]
    ) async throws(DNSError) {
        _ = try await update(server, zone: zone, auth: .tsig(key), prerequisites: prerequisites, updates: updates)
    }

    /// The update of `update(_:zone:key:...)`, signed as `auth` says. Returns nil when the
    /// reply's signature verified, else why it could not be (a GSS-TSIG reply Samba signs so
    /// that it does not verify): the caller's verification queries are then the proof.
    public func update(
        _ server: DNSServer, zone: String, auth: DNSAuthentication, prerequisites: [Prerequisite],
        updates: [UpdateOperation]
    ) async throws(DNSError) -> String? {
        switch auth {
        case .tsig(let key):
            try await tsigUpdate(server, zone: zone, key: key, prerequisites: prerequisites, updates: updates)
            return nil
        case .gss(let session):
            return try await gssUpdate(
                server, zone: zone, session: session, prerequisites: prerequisites, updates: updates)
        }
    }

    /// The zone's SOA MNAME (its primary server) as `server` serves it.
    public func soaPrimary(_ server: DNSServer, zone: String) async throws(DNSError) -> String? {
        let zoneName = DNSName.absoluteZone(zone)
        let deadline = ContinuousClock.now + timeout
        return try await Blocking.run(name: "standby.dns.io") { (_: CancellationFlag) throws(DNSError) -> String? in
            try Self.ask(server, name: zoneName, type: LDNS_RR_TYPE_SOA, deadline: deadline).soaPrimary
        }
    }

    private func gssUpdate(
        _ server: DNSServer, zone: String, session: GSSTSIGSession, prerequisites: [Prerequisite],
        updates: [UpdateOperation]
    ) async throws(DNSError) -> String? {
        let zoneName = DNSName.absoluteZone(zone)
        let soa = session.source.serverPrincipal == nil ? try await soaPrimary(server, zone: zoneName) : nil
        let principal = try session.serverPrincipal(soaPrimary: soa)
        let deadline = ContinuousClock.now + timeout
        let started = ContinuousClock.now
        let credential = session.description
        let unverified = try await Blocking.run(name: "standby.dns.io") {
            (_: CancellationFlag) throws(DNSError) -> String? in
            let prerequisiteList = try LDNSRecordList()
            for prerequisite in prerequisites { try prerequisite.append(to: prerequisiteList, zone: zoneName) }
            let updateList = try LDNSRecordList()
            for update in updates { try update.append(to: updateList, zone: zoneName) }
            let packet = try LDNSPacket.update(zone: zoneName, prerequisites: prerequisiteList, updates: updateList)
            let wire = try packet.wire()
            return try session.withContext(server, principal: principal, deadline: deadline) {
                context throws(DNSError) -> String? in
                let signed = try GSSTSIGSession.sign(wire, context: context)
                let replyWire = try DNSTransport.exchange(signed.wire, with: server, tcp: true, deadline: deadline)
                let reply = try LDNSPacket.parse(replyWire, from: server)
                guard reply.id == packet.id else {
                    throw DNSError(.network, server: server, "\(server) answered a different message (id mismatch)")
                }
                let rcode = DNSResponseCode(rawValue: UInt16(reply.rcode))
                let signature = GSSTSIGSession.verify(replyWire, requestMAC: signed.mac, context: context)
                if case .error(let code, let time, let other) = signature {
                    if DNSResponseCode(rawValue: code) == .badKey {
                        // The server forgot the context (restarted, expired): negotiate again.
                        throw DNSError(.gssContextExpired, server: server, "\(server) no longer knows the context")
                    }
                    throw Self.tsigError(
                        code, rcode: rcode, otherData: other, replyTimeSigned: time, signedAt: signed.timeSigned,
                        server: server, credential: credential)
                }
                if rcode != .noError {
                    if rcode == .serverFailure {
                        throw DNSError(
                            .refused, server: server,
                            "\(server) refused the update of \(zoneName) (SERVFAIL) for \(session.source.principal): Samba answers so when the account has no rights on the records (Windows DNS answers REFUSED); grant it rights on them (DnsAdmins, or the records' ACL), else see the server's log"
                        )
                    }
                    throw Self.rcodeError(
                        rcode, server: server, zone: zoneName, credential: credential, unsigned: signature == .unsigned)
                }
                switch signature {
                case .verified: return nil
                case .unsigned: return "\(server) accepted the update but did not sign its reply"
                case .invalid, .error:
                    return "\(server) accepted the update, but the GSS-TSIG signature of its reply does not verify"
                }
            }
        }
        logger.debug(
            "DNS update accepted",
            metadata: [
                "server": "\(server)", "zone": "\(zoneName)", "prerequisites": "\(prerequisites.count)",
                "updates": "\(updates.count)", "auth": "gss-tsig", "principal": "\(session.source.principal)",
                "elapsed": "\((ContinuousClock.now - started).secondsText)",
            ])
        return unverified
    }

    private func tsigUpdate(
        _ server: DNSServer, zone: String, key: TSIGKey, prerequisites: [Prerequisite], updates: [UpdateOperation]
    ) async throws(DNSError) {
        let zoneName = DNSName.absoluteZone(zone)
        let deadline = ContinuousClock.now + timeout
        let started = ContinuousClock.now
        try await Blocking.run(name: "standby.dns.io") { (_: CancellationFlag) throws(DNSError) in
            let prerequisiteList = try LDNSRecordList()
            for prerequisite in prerequisites { try prerequisite.append(to: prerequisiteList, zone: zoneName) }
            let updateList = try LDNSRecordList()
            for update in updates { try update.append(to: updateList, zone: zoneName) }
            let packet = try LDNSPacket.update(zone: zoneName, prerequisites: prerequisiteList, updates: updateList)
            try packet.sign(with: key)
            guard let requestMAC = packet.mac else { throw DNSError(.ldns, "ldns signed an update without a MAC") }
            let signedAt = packet.tsig?.timeSigned ?? Int64(Date().timeIntervalSince1970)
            let wire = try packet.wire()
            let replyWire = try DNSTransport.exchange(wire, with: server, tcp: true, deadline: deadline)
            let reply = try LDNSPacket.parse(replyWire, from: server)
            guard reply.id == packet.id else {
                throw DNSError(.network, server: server, "\(server) answered a different message (id mismatch)")
            }
            try Self.check(
                reply: reply, wire: replyWire, requestMAC: requestMAC, key: key, signedAt: signedAt, server: server,
                zone: zoneName)
        }
        logger.debug(
            "DNS update accepted",
            metadata: [
                "server": "\(server)", "zone": "\(zoneName)", "prerequisites": "\(prerequisites.count)",
                "updates": "\(updates.count)", "key": "\(key.name)",
                "elapsed": "\((ContinuousClock.now - started).secondsText)",
            ])
    }

    /// Turns an update reply into success or a plain-words error. The TSIG error comes first:
    /// BADSIG and BADKEY replies are unsigned and BADTIME arrives as NOTAUTH with ldns status OK,
    /// so neither the signature nor the rcode alone says what happened.
    static func check(
        reply: LDNSPacket, wire: [UInt8], requestMAC: UnsafeMutablePointer<ldns_rdf>, key: TSIGKey,
        signedAt: Int64, server: DNSServer, zone: String
    ) throws(DNSError) {
        let rcode = DNSResponseCode(rawValue: UInt16(reply.rcode))
        if let tsig = reply.tsig, tsig.error != 0 {
            throw tsigError(
                tsig.error, rcode: rcode, otherData: tsig.otherData, replyTimeSigned: tsig.timeSigned,
                signedAt: signedAt, server: server, key: key)
        }
        guard reply.tsig != nil else {
            if rcode != .noError { throw rcodeError(rcode, server: server, zone: zone, key: key, unsigned: true) }
            throw DNSError(
                .replyNotAuthenticated, server: server,
                "\(server) answered the signed update without a signature; the reply cannot be trusted")
        }
        guard reply.verifyTSIG(wire: wire, key: key, requestMAC: requestMAC) else {
            throw DNSError(
                .replyNotAuthenticated, server: server,
                "the reply from \(server) does not carry a valid signature of \(key) (\(rcode)); it cannot be trusted")
        }
        if rcode != .noError { throw rcodeError(rcode, server: server, zone: zone, key: key, unsigned: false) }
    }

    /// The plain-words error for a TSIG error in a reply. For BADTIME the server tells its clock
    /// in Other Data (BIND) or in the reply's Time Signed; the skew is the server's minus ours.
    static func tsigError(
        _ error: UInt16, rcode: DNSResponseCode, otherData: [UInt8], replyTimeSigned: Int64, signedAt: Int64,
        server: DNSServer, key: TSIGKey
    ) -> DNSError {
        tsigError(
            error, rcode: rcode, otherData: otherData, replyTimeSigned: replyTimeSigned, signedAt: signedAt,
            server: server, credential: "\(key)")
    }

    static func tsigError(
        _ error: UInt16, rcode: DNSResponseCode, otherData: [UInt8], replyTimeSigned: Int64, signedAt: Int64,
        server: DNSServer, credential key: String
    ) -> DNSError {
        switch DNSResponseCode(rawValue: error) {
        case .badSignature:
            return DNSError(
                .badSignature, server: server,
                "\(server) rejected the signature of \(key) (NOTAUTH, BADSIG): the secret differs from the server's")
        case .badKey:
            return DNSError(
                .badKey, server: server,
                "\(server) does not know \(key) (NOTAUTH, BADKEY): check the key name and algorithm in its configuration"
            )
        case .badTime:
            var skew: Int64?
            if otherData.count >= 6 {
                skew = LDNS.uint48(otherData) - signedAt
            } else if replyTimeSigned != 0 && replyTimeSigned != signedAt {
                skew = replyTimeSigned - signedAt
            }
            let seen = skew.map { ", the server's clock is \($0 >= 0 ? "+" : "")\($0) s from ours" } ?? ""
            return DNSError(
                .badTime, server: server,
                "\(server) refused the update: the clocks differ by more than the 300 s fudge (NOTAUTH, BADTIME\(seen)); "
                    + "fix NTP on the controller or the server",
                clockSkew: skew)
        default:
            return DNSError(
                .replyNotAuthenticated, server: server,
                "\(server) rejected the TSIG of \(key) (\(rcode), TSIG error \(DNSResponseCode(rawValue: error)))")
        }
    }

    static func rcodeError(_ rcode: DNSResponseCode, server: DNSServer, zone: String, key: TSIGKey, unsigned: Bool)
        -> DNSError
    {
        rcodeError(rcode, server: server, zone: zone, credential: "\(key)", unsigned: unsigned)
    }

    static func rcodeError(
        _ rcode: DNSResponseCode, server: DNSServer, zone: String, credential key: String, unsigned: Bool
    ) -> DNSError {
        switch rcode {
        case .nxRRset, .yxRRset, .nxDomain, .yxDomain:
            DNSError(
                .prerequisiteFailed, server: server,
                "\(server) refused the update of \(zone) (\(rcode)): a record set no longer holds the expected value, "
                    + "someone else changed it; nothing was changed")
        case .refused:
            DNSError(
                .refused, server: server,
                "\(server) refused the update of \(zone) (REFUSED): its update policy does not let \(key) change these records"
            )
        case .notAuth:
            DNSError(
                .notAuthoritative, server: server,
                "\(server) is not authoritative for \(zone) (NOTAUTH): send updates to the primary master")
        case .formatError:
            DNSError(.formatError, server: server, "\(server) could not parse the update of \(zone) (FORMERR)")
        case .serverFailure:
            DNSError(.serverFailure, server: server, "\(server) failed while updating \(zone) (SERVFAIL); see its log")
        case .notZone:
            DNSError(.notZone, server: server, "\(server): a record is outside the zone \(zone) (NOTZONE)")
        case .notImplemented:
            DNSError(
                .unexpectedResponse, server: server, "\(server) does not accept dynamic updates for \(zone) (NOTIMP)")
        default:
            DNSError(.unexpectedResponse, server: server, "\(server) answered the update of \(zone) with \(rcode)")
        }
    }
}

/// An RFC 2136 prerequisite.
public enum Prerequisite: Sendable, Hashable {
    /// "RRset exists (value dependent)": the record set holds exactly these values.
    case holds(name: String, type: String, rdata: [String])
    /// "RRset does not exist".
    case absent(name: String, type: String)

    func append(to list: LDNSRecordList, zone: String) throws(DNSError) {
        switch self {
        case .holds(let name, let type, let rdata):
            let owner = DNSName.absolute(name, in: zone)
            if rdata.isEmpty {
                try Prerequisite.absent(name: name, type: type).append(to: list, zone: zone)
            }
            for value in rdata { try list.append(name: owner, ttl: 0, class: "IN", type: type, rdata: value) }
        case .absent(let name, let type):
            try list.appendEmpty(
                name: DNSName.absolute(name, in: zone), class: LDNS_RR_CLASS_NONE, type: LDNS.type(named: type))
        }
    }
}

/// An RFC 2136 update operation.
public enum UpdateOperation: Sendable, Hashable {
    /// Delete the whole record set.
    case deleteRecordSet(name: String, type: String)
    /// Add one record.
    case add(name: String, type: String, ttl: UInt32, rdata: String)

    func append(to list: LDNSRecordList, zone: String) throws(DNSError) {
        switch self {
        case .deleteRecordSet(let name, let type):
            try list.appendEmpty(
                name: DNSName.absolute(name, in: zone), class: LDNS_RR_CLASS_ANY, type: LDNS.type(named: type))
        case .add(let name, let type, let ttl, let rdata):
            try list.append(name: DNSName.absolute(name, in: zone), ttl: ttl, class: "IN", type: type, rdata: rdata)
        }
    }
}
