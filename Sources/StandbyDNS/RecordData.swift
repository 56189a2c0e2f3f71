import CLDNS
import Foundation

/// One value of a record set, read as its type's RDATA by libldns: the check `standby check`
/// makes at load time, with the parser the cutover sends the value with, so a value that loads is
/// a value the update can carry.
public enum RecordData {
    /// Whether libldns knows `type` as a record type name ("SRV", "A", "NAPTR").
    public static func isKnownType(_ type: String) -> Bool {
        ldns_get_rr_type_by_name(type).rawValue != 0
    }

    /// `value` as ldns prints it back, the form the cutover compares and sends. Throws
    /// `invalidInput` naming the value and ldns's reason when it is not RDATA of `type`, and when
    /// it holds no data at all (a record without RDATA would be a delete, not a value).
    public static func canonical(_ value: String, type: String, owner: String) throws(DNSError) -> String {
        guard !value.contains(where: \.isNewline) else {
            throw DNSError(.invalidInput, "a \(type) value for \(owner) must be one line")
        }
        let text = try LDNS.normalize(rdata: value, type: type, owner: owner)
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw DNSError(.invalidInput, "'\(value)' holds no \(type) data for \(owner)")
        }
        return text
    }

    /// Whether libldns reads `name` as a domain name.
    public static func isDomainName(_ name: String) -> Bool {
        guard !name.isEmpty, !name.contains(where: \.isWhitespace), let rdf = ldns_dname_new_frm_str(name) else {
            return false
        }
        ldns_rdf_deep_free(rdf)
        return true
    }
}
