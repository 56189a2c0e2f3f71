import Foundation
import Logging
import StandbyDNS
import StandbyLab
import Testing

/// The SIP records in an Active Directory-integrated zone on a real Samba AD domain controller,
/// changed with GSS-TSIG (RFC 3645) as Windows DNS requires: Kerberos from the service
/// account's keytab or password, the context negotiated through TKEY, every update signed.
@Suite("GSS-TSIG against a Samba AD domain controller", .tags(.server), .serialized)
struct GSSTSIGTests {
    static let zone = SambaDomainController.zone
    static let internalTLS = "_sipinternaltls._tcp"
    static let sip = "_sip._tcp"
    static let primary = [internalTLS: "0 0 5061 pool01.ad.lab.test.", sip: "0 0 5060 sip.ad.lab.test."]
    static let secondary = [internalTLS: "0 0 5061 pool02-dr.ad.lab.test.", sip: "0 0 5060 sip-dr.ad.lab.test."]
    static let logger = Logger(label: "standby.dns.gss.tests") { _ in SwiftLogNoOpLogHandler() }

    struct Domain {
        let lab: LabDirectory
        let dc: SambaDomainController

        static func start(_ prefix: String) throws -> Domain {
            let lab = try LabDirectory(prefix: prefix)
            do {
                let dc = try SambaDomainController.start(in: lab)
                try dc.addRecord(internalTLS, type: "SRV", "pool01.ad.lab.test 5061 0 0")
                try dc.addRecord(sip, type: "SRV", "sip.ad.lab.test 5060 0 0")
                return Domain(lab: lab, dc: dc)
            } catch {
                lab.remove()
                throw error
            }
        }

        func stop() {
            dc.stop()
            lab.remove()
        }

        func source(
            principal: String? = nil, secret: GSSCredentialSource.Secret? = nil, serverPrincipal: String? = nil
        ) -> GSSCredentialSource {
            GSSCredentialSource(
                principal: principal ?? dc.principal, secret: secret ?? .keytab(dc.keytabPath),
                krb5Conf: dc.krb5ConfPath, serverPrincipal: serverPrincipal)
        }

        func cutover(_ session: GSSTSIGSession, from: [String: String], to: [String: String]) throws -> DNSCutover {
            try DNSCutover(
                zone: GSSTSIGTests.zone, servers: [DNSServer(parsing: dc.dnsAddress)], auth: .gss(session),
                changes: [internalTLS, sip].map {
                    RecordChange(name: $0, type: "SRV", ttl: 900, from: [from[$0] ?? ""], to: [to[$0] ?? ""])
                }, timeout: .seconds(5), verifyTimeout: .seconds(20), logger: GSSTSIGTests.logger)
        }

        /// What the DC serves for both names, with dig.
        func served() throws -> [String] {
            try [internalTLS, sip].flatMap {
                try LabTool.dig("127.0.0.1", dc.dnsPort, "\($0).\(GSSTSIGTests.zone).", "SRV")
            }
        }
    }

    static func values(_ map: [String: String]) -> [String] { [map[internalTLS] ?? "", map[sip] ?? ""] }

    @Test("a cutover to the secondary and back, with the keytab and with the password, one context reused")
    func cutoverAndBack() async throws {
        let domain = try Domain.start("gss-cutover")
        defer { domain.stop() }
        #expect(try domain.served() == Self.values(Self.primary))

        let session = GSSTSIGSession(domain.source())
        let proof = try await domain.cutover(session, from: Self.primary, to: Self.secondary).preflight()
        #expect(proof.outcome == .wouldApply, "\(proof)")
        #expect(try domain.served() == Self.values(Self.primary), "the preflight changed nothing")

        let forward = try await domain.cutover(session, from: Self.primary, to: Self.secondary).run()
        #expect(forward.outcome == .applied, "\(forward)")
        #expect(forward.servers.allSatisfy { $0.verified })
        #expect(try domain.served() == Self.values(Self.secondary))
        #expect(session.negotiations == 1, "the preflight's context served the update too")

        let byPassword = GSSTSIGSession(domain.source(secret: .passwordFile(domain.dc.passwordFilePath)))
        let back = try await domain.cutover(byPassword, from: Self.secondary, to: Self.primary).run()
        #expect(back.outcome == .applied, "\(back)")
        #expect(try domain.served() == Self.values(Self.primary))

        // A stale controller expecting the secondary's values changes nothing.
        let third = Self.primary.mapValues { _ in "0 0 1 x.ad.lab.test." }
        let staleCutover = try domain.cutover(session, from: Self.secondary, to: third)
        let stale = await #expect(throws: DNSError.self) { try await staleCutover.run() }
        #expect(stale?.isPrerequisiteFailure == true, "\(String(describing: stale))")
        #expect(try domain.served() == Self.values(Self.primary))
        let description = "\(forward) \(back) \(String(describing: stale))"
        let password = try String(contentsOfFile: domain.dc.passwordFilePath, encoding: .utf8)
        #expect(!description.contains(password.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}
