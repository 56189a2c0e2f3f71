import CLDNS
import Foundation

// The one place that touches libldns. Every ldns_pkt and ldns_rr_list lives in exactly one final
// class whose deinit frees it; ldns_rr and ldns_rdf values are created and handed to a list or a
// packet (which then own them) inside the same function, so no raw pointer outlives its owner.

/// An ldns packet (ldns_pkt), freed once.
final class LDNSPacket {
    let raw: UnsafeMutablePointer<ldns_pkt>

    private init(raw: UnsafeMutablePointer<ldns_pkt>) { self.raw = raw }

    deinit { ldns_pkt_free(raw) }

    /// A query for `name`/`type` in class IN, recursion not desired.
    static func query(name: String, type: ldns_rr_type, recursive: Bool = false) throws(DNSError) -> LDNSPacket {
        guard let owner = ldns_dname_new_frm_str(name) else {
            throw DNSError(.invalidInput, "'\(name)' is not a valid domain name")
        }
        guard let packet = ldns_pkt_query_new(owner, type, LDNS_RR_CLASS_IN, 0) else {
            throw DNSError(.ldns, "ldns could not build a query for \(name)")
        }
        let result = LDNSPacket(raw: packet)
        ldns_pkt_set_id(packet, UInt16.random(in: 1...UInt16.max))
        ldns_pkt_set_rd(packet, recursive)
        return result
    }

    /// An RFC 2136 update of `zone`: prerequisites, then updates (either may be empty).
    static func update(zone: String, prerequisites: LDNSRecordList, updates: LDNSRecordList) throws(DNSError)
        -> LDNSPacket
    {
        guard let zoneName = ldns_dname_new_frm_str(zone) else {
            throw DNSError(.invalidInput, "'\(zone)' is not a valid zone name")
        }
        // ldns_update_pkt_new takes the zone name and clones both lists.
        guard let packet = ldns_update_pkt_new(zoneName, LDNS_RR_CLASS_IN, prerequisites.raw, updates.raw, nil)
        else {
            throw DNSError(.ldns, "ldns could not build an update of \(zone)")
        }
        let result = LDNSPacket(raw: packet)
        // RFC 2136 leaves the header flags zero; ldns sets RD on every new packet.
        ldns_pkt_set_rd(packet, false)
        ldns_pkt_set_id(packet, UInt16.random(in: 1...UInt16.max))
        return result
    }

    /// Parses a reply off the wire.
    static func parse(_ wire: [UInt8], from server: DNSServer) throws(DNSError) -> LDNSPacket {
        var packet: UnsafeMutablePointer<ldns_pkt>?
        let status = wire.withUnsafeBufferPointer { ldns_wire2pkt(&packet, $0.baseAddress, $0.count) }
        guard status == LDNS_STATUS_OK, let packet else {
            throw DNSError(
                .network, server: server, "\(server) sent a reply that cannot be parsed (\(LDNS.describe(status)))")
        }
        return LDNSPacket(raw: packet)
    }

    /// Signs the packet with TSIG; the request MAC is kept in the packet for verifying the reply.
    func sign(with key: TSIGKey) throws(DNSError) {
        let status = ldns_pkt_tsig_sign(raw, key.name + ".", key.secret, 300, key.algorithm.ldnsName, nil)
        guard status == LDNS_STATUS_OK else {
            throw DNSError(.ldns, "ldns could not sign with \(key) (\(LDNS.describe(status)))")
        }
    }

    func wire() throws(DNSError) -> [UInt8] {
        var bytes: UnsafeMutablePointer<UInt8>?
        var size = 0
        let status = ldns_pkt2wire(&bytes, raw, &size)
        guard status == LDNS_STATUS_OK, let bytes else {
            throw DNSError(.ldns, "ldns could not encode a message (\(LDNS.describe(status)))")
        }
        defer { free(bytes) }
        return Array(UnsafeBufferPointer(start: bytes, count: size))
    }

    var id: UInt16 { ldns_pkt_id(raw) }
    var rcode: UInt8 { UInt8(truncatingIfNeeded: ldns_pkt_get_rcode(raw).rawValue) }
    var authoritative: Bool { ldns_pkt_aa(raw) }
    var truncated: Bool { ldns_pkt_tc(raw) }

    /// The TSIG record of a parsed reply, if any: (error, MAC length, other data).
    var tsig: (error: UInt16, macLength: Int, otherData: [UInt8], timeSigned: Int64)? {
        guard let rr = ldns_pkt_tsig(raw), ldns_rr_rd_count(rr) >= 7 else { return nil }
        let error = ldns_rr_rdf(rr, 5).map { ldns_rdf2native_int16($0) } ?? 0
        let mac = ldns_rr_rdf(rr, 3).map { ldns_rdf_size($0) } ?? 0
        // INT16_DATA fields carry their own 2-byte length prefix.
        let other = ldns_rr_rdf(rr, 6).map { LDNS.bytes($0).dropFirst(2) }.map(Array.init) ?? []
        let time = ldns_rr_rdf(rr, 1).map { LDNS.uint48(LDNS.bytes($0)) } ?? 0
        return (error, max(0, mac - 2), other, time)
    }

    /// The request MAC of a signed packet.
    var mac: UnsafeMutablePointer<ldns_rdf>? {
        guard let rr = ldns_pkt_tsig(raw) else { return nil }
        return ldns_rr_rdf(rr, 3)
    }

    /// Verifies this reply's TSIG over its wire bytes, chained to the request's MAC.
    func verifyTSIG(wire: [UInt8], key: TSIGKey, requestMAC: UnsafeMutablePointer<ldns_rdf>) -> Bool {
        wire.withUnsafeBufferPointer {
            ldns_pkt_tsig_verify(raw, $0.baseAddress, $0.count, key.name + ".", key.secret, requestMAC)
        }
    }

    /// The answer section's records of `name`/`type`, as presentation rdata, with their TTLs.
    func answers(name: String, type: ldns_rr_type) -> [(rdata: String, ttl: UInt32)] {
        guard let list = ldns_pkt_answer(raw), let owner = ldns_dname_new_frm_str(name) else { return [] }
        defer { ldns_rdf_deep_free(owner) }
        var result: [(String, UInt32)] = []
        for index in 0..<ldns_rr_list_rr_count(list) {
            guard let rr = ldns_rr_list_rr(list, index), ldns_rr_get_type(rr) == type,
                let rrOwner = ldns_rr_owner(rr), ldns_dname_compare(rrOwner, owner) == 0
            else { continue }
            result.append((LDNS.rdata(of: rr), ldns_rr_ttl(rr)))
        }
        return result
    }

    /// The serial of the first SOA record in the answer section.
    /// The MNAME of the answer's SOA (the zone's primary server), absolute.
    var soaPrimary: String? {
        guard let list = ldns_pkt_answer(raw) else { return nil }
        for index in 0..<ldns_rr_list_rr_count(list) {
            guard let rr = ldns_rr_list_rr(list, index), ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA,
                ldns_rr_rd_count(rr) >= 1, let mname = ldns_rr_rdf(rr, 0), let text = ldns_rdf2str(mname)
            else { continue }
            defer { free(text) }
            return String(cString: text)
        }
        return nil
    }

    var soaSerial: UInt32? {
        guard let list = ldns_pkt_answer(raw) else { return nil }
        for index in 0..<ldns_rr_list_rr_count(list) {
            guard let rr = ldns_rr_list_rr(list, index), ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA,
                ldns_rr_rd_count(rr) >= 3, let serial = ldns_rr_rdf(rr, 2)
            else { continue }
            return ldns_rdf2native_int32(serial)
        }
        return nil
    }
}

/// An ldns_rr_list that owns its records, freed once (deep).
final class LDNSRecordList {
    let raw: UnsafeMutablePointer<ldns_rr_list>

    init() throws(DNSError) {
        guard let list = ldns_rr_list_new() else { throw DNSError(.ldns, "ldns could not allocate a record list") }
        raw = list
    }

    deinit { ldns_rr_list_deep_free(raw) }

    /// Appends a full record parsed from presentation format ("name ttl class type rdata").
    func append(name: String, ttl: UInt32, class rrClass: String, type: String, rdata: String) throws(DNSError) {
        var rr: UnsafeMutablePointer<ldns_rr>?
        let text = "\(name) \(ttl) \(rrClass) \(type) \(rdata)"
        let status = ldns_rr_new_frm_str(&rr, text, ttl, nil, nil)
        guard status == LDNS_STATUS_OK, let rr else {
            throw DNSError(
                .invalidInput, "'\(rdata)' is not a valid \(type) value for \(name) (\(LDNS.describe(status)))")
        }
        guard ldns_rr_list_push_rr(raw, rr) else {
            ldns_rr_free(rr)
            throw DNSError(.ldns, "ldns could not add a record to a list")
        }
    }

    /// Appends a record without rdata: the RFC 2136 forms "RRset exists/does not exist" and
    /// "delete an RRset". The TTL must be 0 (ldns would default to 3600, which servers refuse).
    func appendEmpty(name: String, class rrClass: ldns_rr_class, type: ldns_rr_type) throws(DNSError) {
        guard let owner = ldns_dname_new_frm_str(name) else {
            throw DNSError(.invalidInput, "'\(name)' is not a valid domain name")
        }
        guard let rr = ldns_rr_new() else {
            ldns_rdf_deep_free(owner)
            throw DNSError(.ldns, "ldns could not allocate a record")
        }
        ldns_rr_set_owner(rr, owner)
        ldns_rr_set_class(rr, rrClass)
        ldns_rr_set_type(rr, type)
        ldns_rr_set_ttl(rr, 0)
        ldns_rr_set_question(rr, false)
        guard ldns_rr_list_push_rr(raw, rr) else {
            ldns_rr_free(rr)
            throw DNSError(.ldns, "ldns could not add a record to a list")
        }
    }
}

enum LDNS {
    static func describe(_ status: ldns_status) -> String {
        guard let text = ldns_get_errorstr_by_id(status) else { return "ldns status \(status.rawValue)" }
        return String(cString: text)
    }

    static func type(named name: String) throws(DNSError) -> ldns_rr_type {
        let type = ldns_get_rr_type_by_name(name)
        guard type.rawValue != 0 else { throw DNSError(.invalidInput, "'\(name)' is not a DNS record type") }
        return type
    }

    static func bytes(_ rdf: UnsafeMutablePointer<ldns_rdf>) -> [UInt8] {
        guard let data = ldns_rdf_data(rdf) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: ldns_rdf_size(rdf)))
    }

    static func uint48(_ bytes: [UInt8]) -> Int64 {
        guard bytes.count >= 6 else { return 0 }
        return bytes.prefix(6).reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }

    /// The rdata of a record in presentation format: its fields joined by spaces.
    static func rdata(of rr: UnsafeMutablePointer<ldns_rr>) -> String {
        var fields: [String] = []
        for index in 0..<ldns_rr_rd_count(rr) {
            guard let rdf = ldns_rr_rdf(rr, index), let text = ldns_rdf2str(rdf) else { continue }
            fields.append(String(cString: text))
            free(text)
        }
        return fields.joined(separator: " ")
    }

    /// `rdata` as ldns prints it back: the canonical presentation used for comparisons
    /// ("0 0 5061 Pool01.contoso.com" and "0 0 5061 pool01.contoso.com." are the same value).
    static func normalize(rdata: String, type: String, owner: String) throws(DNSError) -> String {
        var rr: UnsafeMutablePointer<ldns_rr>?
        let status = ldns_rr_new_frm_str(&rr, "\(owner) 0 IN \(type) \(rdata)", 0, nil, nil)
        guard status == LDNS_STATUS_OK, let rr else {
            throw DNSError(.invalidInput, "'\(rdata)' is not a valid \(type) value for \(owner) (\(describe(status)))")
        }
        defer { ldns_rr_free(rr) }
        return Self.rdata(of: rr)
    }
}
