import CGSSAPI
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The service account's tickets for SMB's Kerberos logins. libsmbclient (Samba's own Kerberos
/// library, not MIT's) takes its tickets from the default ticket cache, `KRB5CCNAME`: from a
/// keytab, the account's credential is acquired here with MIT's GSSAPI
/// (`gss_acquire_cred_from`, no kinit) and stored with `gss_store_cred_into` into a FILE: cache
/// of this process (mode 0600 in a 0700 directory, removed at exit by the OS's temporary
/// directory rules only, so it is named per process and overwritten on refresh). A FILE: cache,
/// because the two libraries share no memory cache. Without a keytab the ticket cache the
/// environment names is used as it is.
///
/// `KRB5CCNAME` and `KRB5_CONFIG` are the process's: set under one lock, for one account at a
/// time (a deployment has one service account).
enum KerberosTicketCache {
    private struct Filled {
        var account: KerberosAccount
        var path: String
        var until: ContinuousClock.Instant
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var filled: Filled?
    /// Tickets are fetched again after this long (a TGT usually lives 10 h).
    static let refreshAfter: Duration = .seconds(3600)

    /// Makes the account's tickets the default cache's; throws `loginDenied` naming the account
    /// and the keytab when the KDC refuses them, `unreachableHost` when no KDC answers.
    static func prepare(_ account: KerberosAccount, host: String, url: String) throws {
        lock.lock()
        defer { lock.unlock() }
        if let conf = account.krb5Conf { setIfChanged("KRB5_CONFIG", conf) }
        guard let keytab = account.keytab else { return }
        if let filled, filled.account == account, ContinuousClock.now < filled.until {
            setIfChanged("KRB5CCNAME", "FILE:" + filled.path)
            return
        }
        _ = removeAtExit
        let directory = NSTemporaryDirectory() + "/standby-krb5-\(getuid())-\(getpid())"
        mkdir(directory, 0o700)
        chmod(directory, 0o700)
        let path = directory + "/ccache"
        try fill(path: path, account: account, keytab: keytab, host: host, url: url)
        chmod(path, 0o600)
        setIfChanged("KRB5CCNAME", "FILE:" + path)
        filled = Filled(account: account, path: path, until: .now + refreshAfter)
    }

    /// The process's environment is read by other threads (libsmbclient's, libkrb5's): it is
    /// written only when the value changes.
    private static func setIfChanged(_ name: String, _ value: String) {
        if let current = getenv(name), String(cString: current) == value { return }
        setenv(name, value, 1)
    }

    /// The tickets do not outlive the process.
    private static let removeAtExit: Void = {
        atexit {
            if let path = KerberosTicketCache.filled?.path { unlink(path) }
        }
    }()

    private static func fill(path: String, account: KerberosAccount, keytab: String, host: String, url: String)
        throws
    {
        func failure(_ what: String, _ major: OM_uint32, _ minor: OM_uint32) -> TransportError {
            let text = describe(major: major, minor: minor)
            let lower = text.lowercased()
            let code: TransportError.Code =
                lower.contains("cannot contact any kdc") || lower.contains("cannot find kdc")
                ? .unreachableHost : .loginDenied
            return TransportError(
                code, url: url, host: host,
                message: "no Kerberos ticket for \(account.principal) from the keytab \(keytab) (\(what)): \(text)")
        }
        var minor: OM_uint32 = 0
        var name: gss_name_t?
        var major = withBuffer(Array(account.principal.utf8)) { buffer in
            gss_import_name(&minor, &buffer, standby_gss_nt_krb5_principal(), &name)
        }
        guard standby_gss_error(major) == 0, name != nil else {
            throw TransportError(
                .badURL, url: url, host: host,
                message: "smb.kerberos.principal '\(account.principal)' is not a Kerberos principal")
        }
        defer { gss_release_name(&minor, &name) }
        var cred: gss_cred_id_t?
        var mechs = gss_OID_set_desc(count: 1, elements: standby_gss_mech_krb5())
        let memory = "MEMORY:standby-smb-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        major = keytab.withCString { keytabValue in
            memory.withCString { cacheValue in
                "client_keytab".withCString { keytabKey in
                    "ccache".withCString { cacheKey in
                        var elements = [
                            gss_key_value_element_desc(key: keytabKey, value: keytabValue),
                            gss_key_value_element_desc(key: cacheKey, value: cacheValue),
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
        guard standby_gss_error(major) == 0 else { throw failure("acquiring the credential", major, minor) }
        defer { if cred != nil { gss_release_cred(&minor, &cred) } }
        // A keytab credential gets its first ticket when it is first used: asking for its
        // lifetime makes MIT's library ask the KDC now, so a refusal is reported here.
        var lifetime: OM_uint32 = 0
        major = gss_inquire_cred(&minor, cred, nil, &lifetime, nil, nil)
        guard standby_gss_error(major) == 0 else { throw failure("asking the KDC for a ticket", major, minor) }
        let target = "FILE:" + path
        major = target.withCString { cacheValue in
            "ccache".withCString { cacheKey in
                var elements = [gss_key_value_element_desc(key: cacheKey, value: cacheValue)]
                return elements.withUnsafeMutableBufferPointer { list in
                    var store = gss_key_value_set_desc(count: 1, elements: list.baseAddress)
                    return gss_store_cred_into(
                        &minor, cred, Int32(GSS_C_INITIATE), standby_gss_mech_krb5(), 1, 0, &store, nil, nil)
                }
            }
        }
        guard standby_gss_error(major) == 0 else { throw failure("storing the ticket in \(path)", major, minor) }
    }

    private static func withBuffer<T>(_ bytes: [UInt8], _ body: (inout gss_buffer_desc) -> T) -> T {
        var copy = bytes
        return copy.withUnsafeMutableBytes { raw in
            var buffer = gss_buffer_desc(length: raw.count, value: raw.baseAddress)
            return body(&buffer)
        }
    }

    private static func describe(major: OM_uint32, minor: OM_uint32) -> String {
        var parts: [String] = []
        for (status, type) in [(major, standby_gss_c_gss_code()), (minor, standby_gss_c_mech_code())] {
            guard status != 0 else { continue }
            var context: OM_uint32 = 0
            repeat {
                var ignored: OM_uint32 = 0
                var text = gss_buffer_desc()
                gss_display_status(&ignored, status, Int32(type), nil, &context, &text)
                if let value = text.value, text.length > 0 {
                    parts.append(
                        String(decoding: UnsafeRawBufferPointer(start: value, count: text.length), as: UTF8.self))
                }
                gss_release_buffer(&ignored, &text)
            } while context != 0
        }
        return parts.joined(separator: "; ")
    }
}
