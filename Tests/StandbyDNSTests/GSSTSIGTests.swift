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

        static func start(_ prefix: String, clockOffset: Int? = nil) throws -> Domain {
            let lab = try LabDirectory(prefix: prefix)
            var started: SambaDomainController?
            do {
                let dc = try SambaDomainController.start(in: lab, clockOffset: clockOffset)
                started = dc
                try dc.addRecord(internalTLS, type: "SRV", "pool01.ad.lab.test 5061 0 0")
                try dc.addRecord(sip, type: "SRV", "sip.ad.lab.test 5060 0 0")
                return Domain(lab: lab, dc: dc)
            } catch {
                // A DC that started is stopped, or its machine lock would hold every later one.
                started?.stop()
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
                zone: GSSTSIGTests.zone, servers: dc.dnsAddresses.map(DNSServer.init(parsing:)), auth: .gss(session),
                changes: [internalTLS, sip].map {
                    RecordChange(name: $0, type: "SRV", ttl: 900, from: [from[$0] ?? ""], to: [to[$0] ?? ""])
                }, timeout: .seconds(5), verifyTimeout: .seconds(20), logger: GSSTSIGTests.logger)
        }

        /// What the DC serves for both names, with dig; the zone's second server must agree.
        func served() throws -> [String] {
            let answers = try [dc.dnsPort, dc.secondDNSPort].map { port in
                try [internalTLS, sip].flatMap {
                    try LabTool.dig("127.0.0.1", port, "\($0).\(GSSTSIGTests.zone).", "SRV")
                }
            }
            #expect(answers[0] == answers[1], "both authoritative servers serve the same records")
            return answers[0]
        }
    }

    static func values(_ map: [String: String]) -> [String] { [map[internalTLS] ?? "", map[sip] ?? ""] }

    @Test("a cutover to the secondary and back, with the keytab and with the password, one context reused")
    func cutoverAndBack() async throws {
        let domain = try await offThread { try Domain.start("gss-cutover") }
        defer { domain.stop() }
        #expect(try domain.served() == Self.values(Self.primary))

        let session = GSSTSIGSession(domain.source())
        let proof = try await domain.cutover(session, from: Self.primary, to: Self.secondary).preflight()
        #expect(proof.outcome == .wouldApply, "\(proof)")
        #expect(try domain.served() == Self.values(Self.primary), "the preflight changed nothing")

        let forward = try await domain.cutover(session, from: Self.primary, to: Self.secondary).run()
        #expect(forward.outcome == .applied, "\(forward)")
        #expect(forward.servers.count == 2 && forward.servers.allSatisfy { $0.verified }, "both servers verified")
        #expect(try domain.served() == Self.values(Self.secondary))
        #expect(session.negotiations == 1, "the preflight's context served the update too")

        let byPassword = GSSTSIGSession(domain.source(secret: .passwordFile(domain.dc.passwordFilePath)))
        let back = try await domain.cutover(byPassword, from: Self.secondary, to: Self.primary).run()
        #expect(back.outcome == .applied, "\(back)")
        #expect(try domain.served() == Self.values(Self.primary))

        // The DC restarts and forgets the context: the next update is refused as BADKEY, the
        // session negotiates once more and the update goes through.
        try await offThread { try domain.dc.restart() }
        let again = try await domain.cutover(session, from: Self.primary, to: Self.secondary).run()
        #expect(again.outcome == .applied, "\(again)")
        #expect(session.negotiations == 2, "negotiated again after the restart")
        _ = try await domain.cutover(session, from: Self.secondary, to: Self.primary).run()
        #expect(session.negotiations == 2)

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

    /// Runs a cutover that must fail; returns the error, and checks the records did not change.
    func failing(_ domain: Domain, _ source: GSSCredentialSource) async throws -> DNSError? {
        let cutover = try domain.cutover(GSSTSIGSession(source), from: Self.primary, to: Self.secondary)
        let error = await #expect(throws: DNSError.self) { try await cutover.run() }
        #expect(try domain.served() == Self.values(Self.primary), "nothing changed")
        return error
    }

    @Test("each Kerberos failure in plain words, the records unchanged, no secret shown")
    func failures() async throws {
        let domain = try await offThread { try Domain.start("gss-failures") }
        defer { domain.stop() }
        let dc = domain.dc
        let password = try String(contentsOfFile: dc.passwordFilePath, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)

        let stranger = try await failing(
            domain,
            domain.source(
                principal: "nobody@\(SambaDomainController.realm)", secret: .passwordFile(dc.passwordFilePath)))
        #expect(
            stranger?.message.contains("does not know nobody@AD.LAB.TEST") == true, "\(String(describing: stranger))")

        try domain.lab.write("wrong.pass", "not-the-password\n", mode: 0o600)
        let wrong = try await failing(domain, domain.source(secret: .passwordFile(domain.lab.file("wrong.pass"))))
        #expect(wrong?.message.contains("is not svc-standby@AD.LAB.TEST's") == true, "\(String(describing: wrong))")

        let otherKeytab = try await failing(domain, domain.source(secret: .keytab(dc.unprivilegedKeytabPath)))
        #expect(
            otherKeytab?.message.contains("does not hold the current keys of svc-standby@AD.LAB.TEST") == true,
            "\(String(describing: otherKeytab))")

        let noService = try await failing(domain, domain.source(serverPrincipal: "DNS/nosuch.ad.lab.test"))
        #expect(
            noService?.message.contains("no ticket for the DNS server's principal DNS/nosuch.ad.lab.test") == true,
            "\(String(describing: noService))")

        let noRights = try await failing(
            domain,
            domain.source(
                principal: "\(SambaDomainController.unprivilegedAccount)@\(SambaDomainController.realm)",
                secret: .keytab(dc.unprivilegedKeytabPath)))
        #expect(noRights?.code == .refused, "\(String(describing: noRights))")
        #expect(noRights?.message.contains("no rights on the records") == true, "\(String(describing: noRights))")
        // The preflight finds it too, before stage 1: its dry run deletes a record no set holds,
        // which the server checks against the account's rights and has nothing to change.
        let noRightsCutover = try domain.cutover(
            GSSTSIGSession(
                domain.source(
                    principal: "\(SambaDomainController.unprivilegedAccount)@\(SambaDomainController.realm)",
                    secret: .keytab(dc.unprivilegedKeytabPath))), from: Self.primary, to: Self.secondary)
        let refusedEarly = await #expect(throws: DNSError.self) { try await noRightsCutover.preflight() }
        #expect(refusedEarly?.code == .refused, "\(String(describing: refusedEarly))")
        #expect(try domain.served() == Self.values(Self.primary))

        // check's keytab test, which asks no KDC: the account's own keytab holds its keys, the
        // other account's does not.
        #expect(GSSCredentialSource.keytabProblem(dc.keytabPath, principal: dc.principal, krb5Conf: nil) == nil)
        #expect(
            GSSCredentialSource.keytabProblem(dc.unprivilegedKeytabPath, principal: dc.principal, krb5Conf: nil)
                != nil)

        try domain.lab.write("open.keytab", "", mode: 0o644)
        let open = #expect(throws: DNSError.self) {
            try GSSCredentialSource(
                principal: dc.principal, secret: .keytab(domain.lab.file("open.keytab")), krb5Conf: dc.krb5ConfPath
            ).validate()
        }
        #expect(open?.code == .keyPermissions && open?.message.contains("chmod 600") == true)

        for error in [stranger, wrong, otherKeytab, noService, noRights] {
            #expect(!"\(String(describing: error))".contains(password), "the password is never shown")
        }
    }

    @Test("a server that does not speak GSS-TSIG is named as such")
    func bindWithoutGSS() async throws {
        let domain = try await offThread { try Domain.start("gss-bind") }
        defer { domain.stop() }
        let zone = try SIPZoneLab.start()
        defer { zone.stop() }
        let session = GSSTSIGSession(domain.source(serverPrincipal: domain.dc.dnsPrincipal))
        let cutover = try DNSCutover(
            zone: SIPZoneLab.zone, servers: zone.servers, auth: .gss(session),
            changes: SIPZoneLab.changes(from: SIPZoneLab.primaryValues, to: SIPZoneLab.secondaryValues),
            timeout: .seconds(5), verifyTimeout: .seconds(5), logger: Self.logger)
        let error = await #expect(throws: DNSError.self) { try await cutover.run() }
        #expect(error?.message.contains("does not speak GSS-TSIG") == true, "\(String(describing: error))")
        #expect(try zone.digBoth() == SIPZoneLab.expected(SIPZoneLab.primaryValues))
    }

    @Test(
        "a domain controller an hour off: Kerberos follows the KDC's clock; with kdc_timesync off, refused in plain words"
    )
    func clockSkew() async throws {
        let domain = try await offThread { try Domain.start("gss-skew", clockOffset: 3600) }
        defer { domain.stop() }
        // MIT Kerberos' default (kdc_timesync = 1) takes the KDC's time from its skew error and
        // retries: the cutover runs, as the domain's own members would.
        let session = GSSTSIGSession(domain.source())
        let forward = try await domain.cutover(session, from: Self.primary, to: Self.secondary).run()
        #expect(forward.outcome == .applied, "\(forward)")
        _ = try await domain.cutover(session, from: Self.secondary, to: Self.primary).run()

        // A hardened krb5.conf that never follows the KDC: the skew is an error that says so.
        let strict = try String(contentsOfFile: domain.dc.krb5ConfPath, encoding: .utf8).replacingOccurrences(
            of: "[libdefaults]\n", with: "[libdefaults]\n    kdc_timesync = 0\n")
        try domain.lab.write("strict-krb5.conf", strict)
        let source = GSSCredentialSource(
            principal: domain.dc.principal, secret: .keytab(domain.dc.keytabPath),
            krb5Conf: domain.lab.file("strict-krb5.conf"))
        let error = try await failing(domain, source)
        #expect(error?.code == .badTime, "\(String(describing: error))")
        // Both clocks, the KDC's read from its own answer: it runs an hour ahead of ours.
        #expect(error?.message.contains("the KDC's clock reads") == true, "\(String(describing: error))")
        #expect(error?.message.contains("this controller's") == true, "\(String(describing: error))")
        #expect(error?.message.contains("fix NTP") == true, "\(String(describing: error))")
        let skew = try #require(error?.clockSkew)
        #expect(abs(skew - 3600) <= 5, "skew \(skew)")
    }
}

/// Runs blocking lab work (provisioning a domain takes seconds; the one-DC lock may wait for
/// another test's controller) on a thread of its own: on the cooperative pool, which has one
/// thread per core, it starved every other test of the run (seen: exec steps timing out).
func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
