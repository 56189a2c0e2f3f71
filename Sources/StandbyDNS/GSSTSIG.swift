import CGSSAPI
import Foundation
import Logging
import Synchronization

/// GSS-TSIG (RFC 3645) for the DNS servers of one zone: the service account's credential, one
/// security context per server negotiated through TKEY over TCP, updates signed with the
/// context's MIC and replies verified with it.
///
/// ldns signs only with HMAC keys, so the TSIG record is written here, on the wire bytes ldns
/// produced: the digest is the message followed by the TSIG variables (RFC 8945 section 4.3.3),
/// and the MAC is `gss_get_mic` of it. Contexts are reused while they are valid and negotiated
/// again when the server or the library says they expired.
public final class GSSTSIGSession: @unchecked Sendable, CustomStringConvertible {
    public let source: GSSCredentialSource
    private let lock = NSLock()
    private var credential: GSSCredential?
    private var contexts: [String: GSSSecurityContext] = [:]
    /// How many TKEY negotiations ran, for the benchmark and the tests of context reuse.
    public private(set) var negotiations = 0

    public init(_ source: GSSCredentialSource) {
        self.source = source
    }

    private static let sessions = Mutex<[GSSCredentialSource: GSSTSIGSession]>([:])

    /// The process's session for `source`: its credential and contexts are reused by every
    /// cutover of the same account (the preflight's context signs the update that follows).
    public static func shared(_ source: GSSCredentialSource) -> GSSTSIGSession {
        sessions.withLock { sessions in
            if let session = sessions[source] { return session }
            let session = GSSTSIGSession(source)
            sessions[source] = session
            return session
        }
    }

    public var description: String { source.description }

    /// The Kerberos principal of `server`'s DNS service: the topology's `server_principal`, else
    /// `DNS/<primary>` where primary is the zone's SOA MNAME, in the account's realm.
    func serverPrincipal(soaPrimary: String?) throws(DNSError) -> String {
        var name = source.serverPrincipal
        if name == nil, let soaPrimary {
            name = "DNS/" + (soaPrimary.hasSuffix(".") ? String(soaPrimary.dropLast()) : soaPrimary)
        }
        guard var name else {
            throw DNSError(
                .gssapi,
                "no DNS server principal: the zone's SOA names no primary server; set dns.gss_tsig.server_principal")
        }
        if !name.contains("@"), let realm = source.realm { name += "@" + realm }
        return name
    }

    /// Runs `body` with a complete context for `server`, negotiating one if there is none; a
    /// context found expired is dropped and negotiated once more.
    func withContext<T>(
        _ server: DNSServer, principal: String, deadline: ContinuousClock.Instant,
        _ body: (GSSSecurityContext) throws(DNSError) -> T
    ) throws(DNSError) -> T {
        lock.lock()
        defer { lock.unlock() }
        for attempt in 0..<2 {
            let context: GSSSecurityContext
            if let known = contexts[server.description] {
                context = known
            } else {
                context = try negotiate(server, principal: principal, deadline: deadline)
                contexts[server.description] = context
            }
            do {
                return try body(context)
            } catch  where error.code == .gssContextExpired && attempt == 0 {
                contexts[server.description] = nil
            }
        }
        throw DNSError(.gssContextExpired, server: server, "the GSS-TSIG context with \(server) expired twice")
    }

    /// TKEY mode 3 (GSS-API negotiation), repeated while the exchange continues.
    private func negotiate(_ server: DNSServer, principal: String, deadline: ContinuousClock.Instant)
        throws(DNSError) -> GSSSecurityContext
    {
        if credential == nil { credential = try GSSCredential(source) }
        guard let credential else { throw DNSError(.gssapi, "no credential") }
        let target = try GSSAPI.importPrincipal(principal)
        defer {
            var minor: OM_uint32 = 0
            var name: gss_name_t? = target
            gss_release_name(&minor, &name)
        }
        negotiations += 1
        let host = server.host.hasSuffix(".") ? String(server.host.dropLast()) : server.host
        let keyName = "\(UInt32.random(in: 100_000...UInt32.max)).sig-\(host)."
        var handle: gss_ctx_id_t?
        var established = false
        // A negotiation that fails half-way (an error, a server that breaks off) frees its context.
        defer {
            if !established, handle != nil {
                var minor: OM_uint32 = 0
                gss_delete_sec_context(&minor, &handle, nil)
            }
        }
        var input: [UInt8]?
        for _ in 0..<8 {
            let (major, minor, token) = GSSSecurityContext.step(
                credential: credential, target: target, context: &handle, input: input)
            if standby_gss_error(major) != 0 {
                throw Self.initError(
                    major: major, minor: minor, client: source.principal, principal: principal, server: server)
            }
            let complete = major == standby_gss_complete()
            if token.isEmpty && complete {
                established = true
                return GSSSecurityContext(keyName: keyName, handle: handle)
            }
            let reply = try DNSTransport.exchange(
                TKEYMessage.query(keyName: keyName, token: token), with: server, tcp: true, deadline: deadline)
            let answer = try TKEYMessage.parseReply(reply, server: server, keyName: keyName)
            if complete {
                established = true
                return GSSSecurityContext(keyName: keyName, handle: handle)
            }
            input = answer
        }
        throw DNSError(.gssapi, server: server, "the GSS-TSIG negotiation with \(server) did not finish in 8 rounds")
    }

    static func initError(
        major: OM_uint32, minor: OM_uint32, client: String, principal: String, server: DNSServer
    ) -> DNSError {
        let text = GSSAPI.describe(major: major, minor: minor)
        let lower = text.lowercased()
        if lower.contains("server not found") || lower.contains("not found in kerberos database") {
            return DNSError(
                .gssapi, server: server,
                "the KDC has no ticket for the DNS server's principal \(principal) (\(text)); set dns.gss_tsig.server_principal to the DC's DNS/<fqdn>"
            )
        }
        if lower.contains("clock skew") {
            return KDCClock.skewError(
                refused: "Kerberos refused \(client)'s ticket for \(principal)", principal: client, server: server,
                libraryText: text)
        }
        return DNSError(.gssapi, server: server, "GSS-TSIG with \(server) as \(principal) failed: \(text)")
    }

    // MARK: - Signing and verifying

    /// Appends a GSS-TSIG record to `wire` (a message ldns encoded, without TSIG); returns the
    /// signed message, the request MAC and the time signed.
    static func sign(_ wire: [UInt8], context: GSSSecurityContext, now: Int64 = Int64(Date().timeIntervalSince1970))
        throws(DNSError) -> (wire: [UInt8], mac: [UInt8], timeSigned: Int64)
    {
        guard wire.count >= 12 else { throw DNSError(.ldns, "a DNS message shorter than its header") }
        let variables = DNSWire.tsigVariables(
            keyName: context.keyName, algorithm: algorithm, timeSigned: now, fudge: fudge, error: 0, other: [])
        let mac = try context.sign(wire + variables)
        var rdata = DNSWire.name(algorithm)
        DNSWire.append48(&rdata, now)
        DNSWire.append16(&rdata, fudge)
        DNSWire.append16(&rdata, UInt16(mac.count))
        rdata += mac
        rdata += wire[0..<2]  // original id
        DNSWire.append16(&rdata, 0)  // error
        DNSWire.append16(&rdata, 0)  // other len
        var record = DNSWire.name(context.keyName)
        DNSWire.append16(&record, 250)  // TSIG
        DNSWire.append16(&record, 255)  // ANY
        DNSWire.append32(&record, 0)
        DNSWire.append16(&record, UInt16(rdata.count))
        record += rdata
        var signed = wire + record
        let arcount = UInt16(signed[10]) << 8 | UInt16(signed[11])
        signed[10] = UInt8((arcount + 1) >> 8)
        signed[11] = UInt8((arcount + 1) & 0xff)
        return (signed, mac, now)
    }

    /// What a reply's GSS-TSIG says.
    enum ReplySignature: Equatable {
        case verified
        case unsigned
        /// Signed, with a MIC that does not verify.
        case invalid
        /// The server's TSIG error (BADKEY, BADSIG, BADTIME) and the time it signed.
        case error(UInt16, timeSigned: Int64, other: [UInt8])
    }

    static func verify(_ reply: [UInt8], requestMAC: [UInt8], context: GSSSecurityContext) -> ReplySignature {
        guard let tsig = DNSWire.lastTSIG(reply) else { return .unsigned }
        if tsig.error != 0 { return .error(tsig.error, timeSigned: tsig.timeSigned, other: tsig.other) }
        var unsigned = Array(reply[0..<tsig.recordStart])
        let arcount = UInt16(unsigned[10]) << 8 | UInt16(unsigned[11])
        guard arcount > 0 else { return .invalid }
        unsigned[10] = UInt8((arcount - 1) >> 8)
        unsigned[11] = UInt8((arcount - 1) & 0xff)
        unsigned[0] = UInt8(tsig.originalID >> 8)
        unsigned[1] = UInt8(tsig.originalID & 0xff)
        var digest: [UInt8] = []
        DNSWire.append16(&digest, UInt16(requestMAC.count))
        digest += requestMAC
        digest += unsigned
        digest += DNSWire.tsigVariables(
            keyName: context.keyName, algorithm: algorithm, timeSigned: tsig.timeSigned, fudge: tsig.fudge,
            error: tsig.error, other: tsig.other)
        return context.verify(digest, mic: tsig.mac) ? .verified : .invalid
    }

    static let algorithm = "gss-tsig."
    static let fudge: UInt16 = 300
}

/// TKEY messages of a GSS-API negotiation (RFC 2930, RFC 3645 section 4).
enum TKEYMessage {
    /// A query for `keyName` TKEY, with the TKEY record (mode 3, the token) in the additional
    /// section, as Windows and BIND expect it.
    static func query(keyName: String, token: [UInt8]) -> [UInt8] {
        var message: [UInt8] = []
        DNSWire.append16(&message, UInt16.random(in: 0...UInt16.max))
        DNSWire.append16(&message, 0)  // a query, no recursion
        DNSWire.append16(&message, 1)
        DNSWire.append16(&message, 0)
        DNSWire.append16(&message, 0)
        DNSWire.append16(&message, 1)
        message += DNSWire.name(keyName)
        DNSWire.append16(&message, 249)
        DNSWire.append16(&message, 255)
        let now = UInt32(truncatingIfNeeded: Int64(Date().timeIntervalSince1970))
        var rdata = DNSWire.name(GSSTSIGSession.algorithm)
        DNSWire.append32(&rdata, now)
        DNSWire.append32(&rdata, now)
        DNSWire.append16(&rdata, 3)  // GSS-API negotiation
        DNSWire.append16(&rdata, 0)
        DNSWire.append16(&rdata, UInt16(token.count))
        rdata += token
        DNSWire.append16(&rdata, 0)
        message += DNSWire.name(keyName)
        DNSWire.append16(&message, 249)
        DNSWire.append16(&message, 255)
        DNSWire.append32(&message, 0)
        DNSWire.append16(&message, UInt16(rdata.count))
        message += rdata
        return message
    }

    /// The server's token from the answer's TKEY record; a TKEY error or an rcode is an error
    /// that says the server does not take GSS-TSIG, or why it refused.
    static func parseReply(_ wire: [UInt8], server: DNSServer, keyName: String) throws(DNSError) -> [UInt8] {
        guard let message = DNSWire.Message(wire) else {
            throw DNSError(.formatError, server: server, "\(server) answered the TKEY query with a malformed message")
        }
        let rcode = DNSResponseCode(rawValue: UInt16(message.rcode))
        guard let tkey = message.records.first(where: { $0.type == 249 }) else {
            throw DNSError(
                .gssapi, server: server,
                "\(server) does not speak GSS-TSIG: its answer to the TKEY negotiation holds no TKEY record (\(rcode)); "
                    + "it takes no secure dynamic updates (a TSIG-key server wants dns.key instead)")
        }
        var reader = DNSWire.Reader(wire, at: tkey.rdataStart)
        guard reader.skipName(), let _ = reader.u32(), let _ = reader.u32(), let _ = reader.u16(),
            let error = reader.u16(), let size = reader.u16(), let token = reader.bytes(Int(size))
        else {
            throw DNSError(.formatError, server: server, "\(server) sent a malformed TKEY record")
        }
        if error != 0 {
            throw DNSError(
                .gssapi, server: server,
                "\(server) refused the GSS-TSIG negotiation (TKEY error \(DNSResponseCode(rawValue: error)))")
        }
        if rcode != .noError {
            throw DNSError(.gssapi, server: server, "\(server) answered the GSS-TSIG negotiation with \(rcode)")
        }
        return token
    }
}

/// The few wire-format pieces GSS-TSIG needs that ldns does not give for a non-HMAC algorithm.
enum DNSWire {
    static func append16(_ bytes: inout [UInt8], _ value: UInt16) {
        bytes += [UInt8(value >> 8), UInt8(value & 0xff)]
    }

    static func append32(_ bytes: inout [UInt8], _ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff)]
    }

    static func append48(_ bytes: inout [UInt8], _ value: Int64) {
        for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8((value >> Int64(shift)) & 0xff)) }
    }

    /// An absolute name in canonical (lower-case, uncompressed) wire form.
    static func name(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for label in text.lowercased().split(separator: ".") {
            let utf8 = Array(label.utf8.prefix(63))
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        bytes.append(0)
        return bytes
    }

    static func tsigVariables(
        keyName: String, algorithm: String, timeSigned: Int64, fudge: UInt16, error: UInt16, other: [UInt8]
    ) -> [UInt8] {
        var bytes = name(keyName)
        append16(&bytes, 255)
        append32(&bytes, 0)
        bytes += name(algorithm)
        append48(&bytes, timeSigned)
        append16(&bytes, fudge)
        append16(&bytes, error)
        append16(&bytes, UInt16(other.count))
        return bytes + other
    }

    struct Reader {
        let bytes: [UInt8]
        var offset: Int

        init(_ bytes: [UInt8], at offset: Int) {
            self.bytes = bytes
            self.offset = offset
        }

        mutating func u16() -> UInt16? {
            guard offset + 2 <= bytes.count else { return nil }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func u32() -> UInt32? {
            guard let high = u16(), let low = u16() else { return nil }
            return UInt32(high) << 16 | UInt32(low)
        }

        mutating func u48() -> Int64? {
            guard let high = u16(), let low = u32() else { return nil }
            return Int64(high) << 32 | Int64(low)
        }

        mutating func bytes(_ count: Int) -> [UInt8]? {
            guard count >= 0, offset + count <= bytes.count else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }

        /// Skips a name, compressed or not.
        mutating func skipName() -> Bool {
            while offset < bytes.count {
                let length = bytes[offset]
                if length & 0xC0 == 0xC0 {
                    offset += 2
                    return offset <= bytes.count
                }
                offset += 1
                if length == 0 { return true }
                offset += Int(length)
            }
            return false
        }
    }

    struct Record {
        var start: Int
        var type: UInt16
        var rdataStart: Int
        var rdataLength: Int
    }

    /// A message's header and the positions of its answer, authority and additional records.
    struct Message {
        var rcode: UInt8
        var records: [Record]
        var additionalStart: Int

        init?(_ wire: [UInt8]) {
            var reader = Reader(wire, at: 4)
            guard wire.count >= 12, let qd = reader.u16(), let an = reader.u16(), let ns = reader.u16(),
                let ar = reader.u16()
            else { return nil }
            rcode = wire[3] & 0x0f
            for _ in 0..<qd {
                guard reader.skipName(), reader.u16() != nil, reader.u16() != nil else { return nil }
            }
            records = []
            additionalStart = 0
            for index in 0..<(Int(an) + Int(ns) + Int(ar)) {
                let start = reader.offset
                guard reader.skipName(), let type = reader.u16(), reader.u16() != nil, reader.u32() != nil,
                    let length = reader.u16(), reader.bytes(Int(length)) != nil
                else { return nil }
                if index == Int(an) + Int(ns) { additionalStart = records.count }
                records.append(
                    Record(
                        start: start, type: type, rdataStart: reader.offset - Int(length), rdataLength: Int(length)))
            }
        }
    }

    struct TSIGRecord {
        var recordStart: Int
        var timeSigned: Int64
        var fudge: UInt16
        var mac: [UInt8]
        var originalID: UInt16
        var error: UInt16
        var other: [UInt8]
    }

    /// The TSIG record ending the additional section, if there is one.
    static func lastTSIG(_ wire: [UInt8]) -> TSIGRecord? {
        guard let message = Message(wire), let last = message.records.last, last.type == 250 else { return nil }
        var reader = Reader(wire, at: last.rdataStart)
        guard reader.skipName(), let time = reader.u48(), let fudge = reader.u16(), let size = reader.u16(),
            let mac = reader.bytes(Int(size)), let id = reader.u16(), let error = reader.u16(),
            let otherSize = reader.u16(), let other = reader.bytes(Int(otherSize))
        else { return nil }
        return TSIGRecord(
            recordStart: last.start, timeSigned: time, fudge: fudge, mac: mac, originalID: id, error: error,
            other: other)
    }
}

/// How updates are signed: a TSIG shared secret (BIND, Knot), or GSS-TSIG with a Kerberos
/// service account (Windows DNS in an Active Directory-integrated zone, Samba's DNS).
public enum DNSAuthentication: Sendable, CustomStringConvertible {
    case tsig(TSIGKey)
    case gss(GSSTSIGSession)

    public var description: String {
        switch self {
        case .tsig(let key): "\(key)"
        case .gss(let session): session.description
        }
    }
}
