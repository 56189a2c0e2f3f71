import CGSSAPI
import Foundation
import Synchronization

/// MIT Kerberos' GSSAPI, wrapped once: a credential for the service account and a security
/// context with one DNS server. Every call blocks (it may ask the KDC): call from `BlockingIO`.
///
/// The library reads `KRB5_CONFIG` when it makes its krb5 context; `GSSCredential.acquire` sets
/// it from the topology's `krb5_conf` before the first call, once per process.
enum GSSAPI {
    /// "major: minor" in the library's words, for errors.
    static func describe(major: OM_uint32, minor: OM_uint32) -> String {
        var parts: [String] = []
        for (status, type) in [(major, standby_gss_c_gss_code()), (minor, standby_gss_c_mech_code())]
        where status != 0 {
            var context: OM_uint32 = 0
            repeat {
                var minorOut: OM_uint32 = 0
                var text = gss_buffer_desc()
                let result = gss_display_status(&minorOut, status, Int32(type), nil, &context, &text)
                if result == standby_gss_complete(), let value = text.value {
                    let line = String(
                        decoding: UnsafeRawBufferPointer(start: value, count: text.length), as: UTF8.self)
                    if !line.isEmpty && !parts.contains(line) { parts.append(line) }
                }
                gss_release_buffer(&minorOut, &text)
                if result != standby_gss_complete() { break }
            } while context != 0
        }
        return parts.isEmpty ? "GSSAPI major \(major), minor \(minor)" : parts.joined(separator: ": ")
    }

    /// A GSS name from `text` in Kerberos principal form (`svc-standby@CONTOSO.COM`,
    /// `DNS/dc01.contoso.com@CONTOSO.COM`).
    static func importPrincipal(_ text: String) throws(DNSError) -> gss_name_t {
        var minor: OM_uint32 = 0
        var name: gss_name_t?
        var bytes = Array(text.utf8)
        let major = bytes.withUnsafeMutableBytes { raw in
            var buffer = gss_buffer_desc(length: raw.count, value: raw.baseAddress)
            return gss_import_name(&minor, &buffer, standby_gss_nt_krb5_principal(), &name)
        }
        guard standby_gss_error(major) == 0, let name else {
            throw DNSError(
                .gssapi, "'\(text)' is not a Kerberos principal: \(describe(major: major, minor: minor))")
        }
        return name
    }

    static func withBuffer<T>(_ bytes: [UInt8], _ body: (inout gss_buffer_desc) -> T) -> T {
        var copy = bytes
        return copy.withUnsafeMutableBytes { raw in
            var buffer = gss_buffer_desc(length: raw.count, value: raw.baseAddress)
            return body(&buffer)
        }
    }

    static func take(_ buffer: inout gss_buffer_desc) -> [UInt8] {
        defer {
            var minor: OM_uint32 = 0
            gss_release_buffer(&minor, &buffer)
        }
        guard let value = buffer.value, buffer.length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: value, count: buffer.length))
    }
}

/// Where the service account's Kerberos credential comes from, as the topology's
/// `dns.gss_tsig` says. Neither the keytab's keys nor the password ever appear in a
/// description, a log or an error.
public struct GSSCredentialSource: Sendable, CustomStringConvertible, Hashable {
    public enum Secret: Sendable, Hashable {
        /// A keytab file (mode 0600) holding the principal's keys.
        case keytab(String)
        /// A file (mode 0600) whose first line is the password.
        case passwordFile(String)
        /// The ticket cache (`KRB5CCNAME`, else the default), filled by `kinit` beforehand.
        case ticketCache
    }

    /// `svc-standby@CONTOSO.COM`
    public var principal: String
    public var secret: Secret
    /// A krb5.conf for this deployment; nil for `KRB5_CONFIG` or the system's.
    public var krb5Conf: String?
    /// `DNS/dc01.contoso.com`; nil for `DNS/<the SOA's primary server>`.
    public var serverPrincipal: String?

    public init(principal: String, secret: Secret, krb5Conf: String? = nil, serverPrincipal: String? = nil) {
        self.principal = principal
        self.secret = secret
        self.krb5Conf = krb5Conf
        self.serverPrincipal = serverPrincipal
    }

    /// The realm of `principal` (after the last @).
    public var realm: String? {
        principal.lastIndex(of: "@").map { String(principal[principal.index(after: $0)...]) }
    }

    public var description: String {
        switch secret {
        case .keytab(let path): "GSS-TSIG as \(principal) (keytab \(path))"
        case .passwordFile(let path): "GSS-TSIG as \(principal) (password file \(path))"
        case .ticketCache: "GSS-TSIG as \(principal) (ticket cache)"
        }
    }

    /// Checks the principal's form and the secret file's mode, as TSIG key files are checked.
    public func validate() throws(DNSError) {
        guard let at = principal.lastIndex(of: "@"), at != principal.startIndex,
            principal.index(after: at) != principal.endIndex, !principal.contains(" ")
        else {
            throw DNSError(
                .keyFile,
                "dns.gss_tsig.principal '\(principal)' is not a Kerberos principal like svc-standby@CONTOSO.COM")
        }
        switch secret {
        case .keytab(let path): try SecretFile.check(path, what: "the keytab")
        case .passwordFile(let path): try SecretFile.check(path, what: "the password file")
        case .ticketCache: break
        }
        if let krb5Conf, !FileManager.default.isReadableFile(atPath: krb5Conf) {
            throw DNSError(.keyFile, "cannot read the krb5.conf \(krb5Conf) (dns.gss_tsig.krb5_conf)")
        }
    }

    /// Why the keytab at `path` holds no key of `principal` (no entry for it, not a keytab), or
    /// nil when it holds one. Asks no KDC and no DNS: the keytab is opened as an acceptor's,
    /// which MIT's library checks for an entry of the name and nothing more (acquiring an
    /// initiator's credential from it would ask the KDC for a ticket at once).
    public static func keytabProblem(_ path: String, principal: String, krb5Conf: String?) -> String? {
        do {
            let name = try GSSAPI.importPrincipal(principal)
            defer {
                var minor: OM_uint32 = 0
                var name: gss_name_t? = name
                gss_release_name(&minor, &name)
            }
            var minor: OM_uint32 = 0
            var cred: gss_cred_id_t?
            var mechs = gss_OID_set_desc(count: 1, elements: standby_gss_mech_krb5())
            let major = path.withCString { keytab in
                "keytab".withCString { key in
                    var elements = [gss_key_value_element_desc(key: key, value: keytab)]
                    return elements.withUnsafeMutableBufferPointer { list in
                        var store = gss_key_value_set_desc(count: 1, elements: list.baseAddress)
                        return gss_acquire_cred_from(
                            &minor, name, standby_gss_c_indefinite(), &mechs, Int32(GSS_C_ACCEPT), &store, &cred,
                            nil, nil)
                    }
                }
            }
            if cred != nil { gss_release_cred(&minor, &cred) }
            return standby_gss_error(major) == 0 ? nil : GSSAPI.describe(major: major, minor: minor)
        } catch {
            return error.message
        }
    }

}

/// A Kerberos credential of the service account, acquired without `kinit`: from the keytab
/// (`gss_acquire_cred_from` with a private memory cache), from the password file
/// (`gss_acquire_cred_with_password`), or from the ticket cache.
final class GSSCredential: @unchecked Sendable {
    let source: GSSCredentialSource
    let handle: gss_cred_id_t?
    private let lock = NSLock()

    /// The krb5.conf last put into KRB5_CONFIG; the variable is the process's, so one at a time.
    private static let configuredKRB5 = Mutex<String?>(nil)

    init(_ source: GSSCredentialSource) throws(DNSError) {
        try source.validate()
        self.source = source
        if let conf = source.krb5Conf {
            Self.configuredKRB5.withLock { configured in
                guard configured != conf else { return }
                setenv("KRB5_CONFIG", conf, 1)
                configured = conf
            }
        }
        let name = try GSSAPI.importPrincipal(source.principal)
        defer {
            var minor: OM_uint32 = 0
            var name: gss_name_t? = name
            gss_release_name(&minor, &name)
        }
        var minor: OM_uint32 = 0
        var cred: gss_cred_id_t?
        var mechs = gss_OID_set_desc(count: 1, elements: standby_gss_mech_krb5())
        let major: OM_uint32
        switch source.secret {
        case .keytab(let path):
            // A memory cache of our own: the keytab's tickets never land in a file.
            let ccache = "MEMORY:standby-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            major = path.withCString { keytab in
                ccache.withCString { cache in
                    "client_keytab".withCString { keytabKey in
                        "ccache".withCString { cacheKey in
                            var elements = [
                                gss_key_value_element_desc(key: keytabKey, value: keytab),
                                gss_key_value_element_desc(key: cacheKey, value: cache),
                            ]
                            return elements.withUnsafeMutableBufferPointer { list in
                                var store = gss_key_value_set_desc(count: 2, elements: list.baseAddress)
                                return gss_acquire_cred_from(
                                    &minor, name, standby_gss_c_indefinite(), &mechs, Int32(GSS_C_INITIATE), &store,
                                    &cred, nil, nil)
                            }
                        }
                    }
                }
            }
        case .passwordFile(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                let password = text.split(separator: "\n", omittingEmptySubsequences: false).first, !password.isEmpty
            else {
                throw DNSError(.keyFile, "the password file \(path) is empty or not UTF-8 text")
            }
            major = GSSAPI.withBuffer(Array(password.utf8)) { buffer in
                gss_acquire_cred_with_password(
                    &minor, name, &buffer, standby_gss_c_indefinite(), &mechs, Int32(GSS_C_INITIATE), &cred, nil, nil
                )
            }
        case .ticketCache:
            major = gss_acquire_cred(
                &minor, name, standby_gss_c_indefinite(), &mechs, Int32(GSS_C_INITIATE), &cred, nil, nil)
        }
        guard standby_gss_error(major) == 0 else {
            throw Self.credentialError(source, major: major, minor: minor)
        }
        handle = cred
    }

    deinit {
        var minor: OM_uint32 = 0
        var cred = handle
        if cred != nil { gss_release_cred(&minor, &cred) }
    }

    /// The KDC's answer in plain words: an unknown principal, a wrong password or keytab, a
    /// clock too far from the KDC's, a KDC that cannot be reached.
    static func credentialError(_ source: GSSCredentialSource, major: OM_uint32, minor: OM_uint32) -> DNSError {
        let text = GSSAPI.describe(major: major, minor: minor)
        let lower = text.lowercased()
        let realm = source.realm ?? "?"
        if lower.contains("clock skew") {
            return KDCClock.skewError(
                refused: "the KDC of \(realm) refused \(source.principal)", principal: source.principal,
                libraryText: text)
        }
        if lower.contains("not found in kerberos database") || lower.contains("client not found") {
            return DNSError(
                .gssapi, "the KDC of \(realm) does not know \(source.principal) (\(text)); check dns.gss_tsig.principal"
            )
        }
        if case .keytab(let path) = source.secret,
            lower.contains("no credentials") || lower.contains("no key table entry")
        {
            return DNSError(
                .gssapi, "the keytab \(path) does not hold the current keys of \(source.principal) (\(text))")
        }
        if lower.contains("preauthentication failed") || lower.contains("password incorrect")
            || lower.contains("decrypt integrity check failed") || lower.contains("key version")
            || lower.contains("no key table entry") || lower.contains("no suitable keys")
        {
            let what: String
            switch source.secret {
            case .keytab(let path): what = "the keytab \(path) does not hold the current keys of \(source.principal)"
            case .passwordFile(let path): what = "the password in \(path) is not \(source.principal)'s"
            case .ticketCache: what = "the ticket cache does not hold \(source.principal)'s ticket"
            }
            return DNSError(.gssapi, "\(what) (\(text))")
        }
        if lower.contains("cannot contact any kdc") || lower.contains("cannot find kdc") {
            return DNSError(
                .network, "no KDC of \(realm) could be reached (\(text)); check dns.gss_tsig.krb5_conf's kdc lines")
        }
        return DNSError(.gssapi, "no Kerberos credential for \(source.principal): \(text)")
    }
}

/// One GSS security context with one DNS server, established through TKEY (RFC 3645): signs
/// requests (MIC) and verifies replies. Not thread-safe: one negotiation and one message at a
/// time, guarded by the lock of its `GSSTSIGSession`.
final class GSSSecurityContext {
    /// The TKEY key name the server knows this context by, absolute (`12345.sig-dc01.lab.test.`).
    let keyName: String
    private var handle: gss_ctx_id_t?

    init(keyName: String, handle: gss_ctx_id_t?) {
        self.keyName = keyName
        self.handle = handle
    }

    deinit {
        var minor: OM_uint32 = 0
        if handle != nil { gss_delete_sec_context(&minor, &handle, nil) }
    }

    /// The next token of the negotiation: `input` is the server's last token (nil to start).
    /// Returns the token to send (may be empty) and whether the context is complete.
    static func step(
        credential: GSSCredential, target: gss_name_t, context: inout gss_ctx_id_t?, input: [UInt8]?
    ) -> (major: OM_uint32, minor: OM_uint32, token: [UInt8]) {
        var minor: OM_uint32 = 0
        var output = gss_buffer_desc()
        let major: OM_uint32
        if let input {
            major = GSSAPI.withBuffer(input) { buffer in
                gss_init_sec_context(
                    &minor, credential.handle, &context, target, standby_gss_mech_krb5(), standby_gss_flags(), 0, nil,
                    &buffer, nil, &output, nil, nil)
            }
        } else {
            major = gss_init_sec_context(
                &minor, credential.handle, &context, target, standby_gss_mech_krb5(), standby_gss_flags(), 0, nil, nil,
                nil, &output, nil, nil)
        }
        return (major, minor, GSSAPI.take(&output))
    }

    /// The MIC of `data` (a TSIG's MAC).
    func sign(_ data: [UInt8]) throws(DNSError) -> [UInt8] {
        var minor: OM_uint32 = 0
        var token = gss_buffer_desc()
        let major = GSSAPI.withBuffer(data) { buffer in gss_get_mic(&minor, handle, 0, &buffer, &token) }
        guard standby_gss_error(major) == 0 else {
            if standby_gss_routine_error(major) == standby_gss_s_context_expired() {
                throw DNSError(.gssContextExpired, "the GSS-TSIG context \(keyName) expired")
            }
            throw DNSError(.gssapi, "cannot sign with GSS-TSIG: \(GSSAPI.describe(major: major, minor: minor))")
        }
        return GSSAPI.take(&token)
    }

    /// Whether `mic` is this context's MIC of `data`.
    func verify(_ data: [UInt8], mic: [UInt8]) -> Bool {
        var minor: OM_uint32 = 0
        let major = GSSAPI.withBuffer(data) { message in
            GSSAPI.withBuffer(mic) { token in gss_verify_mic(&minor, handle, &message, &token, nil) }
        }
        return standby_gss_error(major) == 0
    }
}
