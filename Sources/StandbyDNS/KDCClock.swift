import CGSSAPI
import Foundation

/// The KDC's clock, read from its own answer: an initial-ticket request for the principal with
/// no key at all. The KDC answers "pre-authentication required" (or any other KRB-ERROR), and
/// every KRB-ERROR carries the KDC's time (RFC 4120, 5.9.1). GSSAPI hides that message, so a
/// skew the KDC refused could name only our clock; this names both.
///
/// Nothing secret is sent and no password is tried, so the request counts as no failed logon
/// against the account's lockout policy. Blocks (it asks the KDC): call from `BlockingIO`.
enum KDCClock {
    struct Reading: Sendable {
        /// The KDC's time when it answered.
        var kdc: Date
        /// Ours when the answer arrived.
        var ours: Date
        /// kdc − ours, in whole seconds.
        var skew: Int64 { Int64((kdc.timeIntervalSince1970 - ours.timeIntervalSince1970).rounded()) }
    }

    /// The KDC of `principal`'s realm's clock, or nil when no KDC answered with an error.
    /// Reads the krb5.conf named by KRB5_CONFIG, as the GSSAPI calls do.
    static func read(principal: String) -> Reading? {
        var context: krb5_context?
        guard krb5_init_context(&context) == 0, let context else { return nil }
        defer { krb5_free_context(context) }
        var client: krb5_principal?
        guard krb5_parse_name(context, principal, &client) == 0, let client else { return nil }
        defer { krb5_free_principal(context, client) }
        var request: OpaquePointer?
        guard krb5_init_creds_init(context, client, nil, nil, 0, nil, &request) == 0, let request else {
            return nil
        }
        defer { krb5_init_creds_free(context, request) }
        // Fails, as it must without a key; the KDC's last error is what we came for.
        _ = krb5_init_creds_get(context, request)
        let arrived = Date()
        var reply: UnsafeMutablePointer<krb5_error>?
        guard krb5_init_creds_get_error(context, request, &reply) == 0, let reply else { return nil }
        defer { krb5_free_error(context, reply) }
        let kdc = Date(
            timeIntervalSince1970: TimeInterval(UInt32(bitPattern: reply.pointee.stime))
                + TimeInterval(reply.pointee.susec) / 1_000_000)
        return Reading(kdc: kdc, ours: arrived)
    }

    /// The skew error in plain words: both clocks when the KDC told us its own, else ours only.
    /// `refused` says who refused and what (the KDC, a DNS server's ticket check).
    static func skewError(
        refused: String, principal: String, server: DNSServer? = nil, libraryText: String
    ) -> DNSError {
        let formatter = ISO8601DateFormatter()
        guard let reading = read(principal: principal) else {
            return DNSError(
                .badTime, server: server,
                "\(refused): this controller's clock (\(formatter.string(from: Date()))) is further from the KDC's than the realm allows (\(libraryText)); fix NTP on the controller or the domain controller, or let krb5.conf follow the KDC (kdc_timesync = 1)"
            )
        }
        let skew = reading.skew
        let apart = "\(abs(skew)) s \(skew >= 0 ? "behind" : "ahead of") the KDC's"
        let clocks =
            "the KDC's clock reads \(formatter.string(from: reading.kdc)), this controller's \(formatter.string(from: reading.ours)): ours is \(apart)"
        // Kerberos' default limit is 300 s; closer than that, the KDC is not the clock at fault.
        let blame =
            abs(skew) < 300
            ? "the controller and the KDC agree, so the clock at fault is the server's that checked the ticket\(server.map { " (\($0))" } ?? ""); fix NTP there"
            : "fix NTP on the controller or the domain controller, or let krb5.conf follow the KDC (kdc_timesync = 1)"
        return DNSError(
            .badTime, server: server, "\(refused): \(clocks) (\(libraryText)); \(blame)", clockSkew: skew)
    }
}
