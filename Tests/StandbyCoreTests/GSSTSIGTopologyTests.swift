import Foundation
import Testing

@testable import StandbyCore

/// `dns.gss_tsig`, the service account of an Active Directory zone, as the loader and `check`
/// read it.
@Suite("dns.gss_tsig in the topology")
struct GSSTSIGTopologyTests {
    static func withGSS(_ section: String) throws -> String {
        try Fixture.minimal([("  key: /nonexistent/fabrikam.key", section)])
    }

    @Test("a keytab, a password file or the ticket cache; paths as written")
    func loads() throws {
        let keytab = try topology(
            try Self.withGSS(
                """
                  gss_tsig:
                    principal: svc-standby@FABRIKAM.COM
                    keytab: /etc/standby/svc.keytab
                    krb5_conf: /etc/standby/krb5.conf
                    server_principal: DNS/dc01.fabrikam.com
                """))
        let gss = try #require(keytab.dns?.gssTSIG)
        #expect(keytab.dns?.key == nil)
        #expect(gss.principal == "svc-standby@FABRIKAM.COM" && gss.keytab == "/etc/standby/svc.keytab")
        #expect(gss.serverPrincipal == "DNS/dc01.fabrikam.com" && gss.krb5Conf == "/etc/standby/krb5.conf")
        #expect(keytab.dns?.credentialKey == "dns.gss_tsig")
        let cache = try topology(try Self.withGSS("  gss_tsig: { principal: svc-standby@FABRIKAM.COM }"))
        #expect(cache.dns?.gssTSIG?.keytab == nil && cache.dns?.gssTSIG?.passwordFile == nil)
    }

    @Test(
        "refused with the line: both or neither of key and gss_tsig, a malformed principal, keytab with password_file",
        arguments: [
            (
                "  key: /nonexistent/fabrikam.key\n  gss_tsig: { principal: svc@FABRIKAM.COM }",
                "dns has both key and gss_tsig"
            ),
            ("", "dns needs exactly one of key"),
            ("  gss_tsig: { principal: svc-standby }", "is not a Kerberos principal"),
            ("  gss_tsig: { principal: \"svc standby@FABRIKAM.COM\" }", "is not a Kerberos principal"),
            (
                "  gss_tsig: { principal: svc@FABRIKAM.COM, keytab: /a, password_file: /b }",
                "has both keytab and password_file"
            ),
            (
                "  gss_tsig: { principal: svc@FABRIKAM.COM, server_principal: dc01.fabrikam.com }",
                "is not a service principal"
            ),
            ("  gss_tsig: { keytab: /a }", "principal"),
        ])
    func refused(section: String, words: String) throws {
        let found = diagnostics(try Self.withGSS(section))
        #expect(found.contains { $0.message.contains(words) }, "\(found)")
        #expect(found.allSatisfy { $0.line > 1 }, "each names its line: \(found)")
    }

    @Test("check: an open keytab is an error, a keytab without the principal's keys is named, a missing one noted")
    func readiness() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gss-check-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keytab = directory + "/svc.keytab"
        // A keytab in MIT's file format with no entries: version 0x0502 and nothing else.
        try Data([0x05, 0x02]).write(to: URL(fileURLWithPath: keytab))
        func findings(_ path: String) throws -> [Finding] {
            let t = try topology(
                try Self.withGSS("  gss_tsig: { principal: svc-standby@FABRIKAM.COM, keytab: \(path) }"))
            return ReadinessCheck(topology: t, now: Date()).run()
        }
        chmod(keytab, 0o644)
        #expect(try findings(keytab).contains { $0.id == "gss-secret-readable" && $0.severity == .error })
        chmod(keytab, 0o600)
        let empty = try findings(keytab).first { $0.id == "gss-keytab-principal" }
        #expect(
            empty?.severity == .error && empty?.message.contains("svc-standby@FABRIKAM.COM") == true,
            "\(String(describing: empty))")
        #expect(try findings(directory + "/absent.keytab").contains { $0.id == "gss-secret-absent" })
    }
}
