import Foundation
import StandbyDNS
import StandbyLab
import Testing

@Suite("DNS cutover against named and knotd", .tags(.server), .serialized)
struct CutoverTests {
    typealias Lab = SIPZoneLab

    @Test("a good swap of both SIP records, verified on both servers, and back")
    func swapAndBack() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
        let serialBefore = try #require(try lab.serial(0))

        let forward = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        #expect(forward.outcome == .applied)
        #expect(forward.servers.count == 2)
        #expect(forward.servers.allSatisfy { $0.verified })
        #expect(
            forward.before.map(\.rdata) == [
                [(Lab.primaryValues[Lab.internalTLS] ?? "")], [(Lab.primaryValues[Lab.sip] ?? "")],
            ])
        #expect(try lab.digBoth() == Lab.expected(Lab.secondaryValues))
        let serialAfter = try #require(try lab.serial(0))
        #expect(serialAfter > serialBefore)
        #expect(try lab.serial(1) == serialAfter)
        #expect(forward.servers.map(\.soaSerial) == [serialAfter, serialAfter])

        let back = try await lab.cutover(from: Lab.secondaryValues, to: Lab.primaryValues).run()
        #expect(back.outcome == .applied)
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
    }

    @Test("preflight proves the key, the values and every server, and changes nothing; a silent server fails it")
    func preflightChangesNothing() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let serialBefore = try #require(try lab.serial(0))
        let proof = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).preflight()
        #expect(proof.outcome == .wouldApply)
        #expect(proof.servers.count == 2 && proof.servers.allSatisfy { $0.problem == nil })
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
        #expect(try lab.serial(0) == serialBefore, "nothing was changed")

        // Records already at their targets: the preflight still sends the signed prerequisites.
        let stale = try await lab.cutover(from: Lab.secondaryValues, to: Lab.primaryValues).preflight()
        #expect(stale.outcome == .alreadyAtTarget)

        lab.knot.stop()
        let error = await #expect(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).preflight()
        }
        #expect(error?.server?.description == lab.knot.address, "\(String(describing: error))")
        #expect(error?.message.contains("cannot be asked") == true, "\(String(describing: error))")
        #expect(try lab.serial(0) == serialBefore)
    }

    // named binds only addresses configured on an interface, so it stays on 127.0.0.1 here; knotd
    // binds any loopback address.
    @Test("knotd on another loopback address with the same port as named")
    func demoAddresses() async throws {
        let lab = try LabDirectory(prefix: "standby-dns-demo")
        defer { lab.remove() }
        let port = try KnotServer.reservePort(on: "127.0.0.1")
        let named = try NamedServer.start(
            in: lab, zone: Lab.zone, records: ["\(Lab.sip) 300 IN SRV \(Lab.primaryValues[Lab.sip] ?? "")"],
            notify: [port], notifyHost: "127.0.2.54", port: port)
        defer { named.stop() }
        let knot = try KnotServer.start(
            in: lab, zone: Lab.zone, primaryPort: port, port: port, host: "127.0.2.54")
        defer { knot.stop() }
        #expect(named.address == "127.0.0.1:\(port)")
        #expect(knot.address == "127.0.2.54:\(port)")
        let cutover = try DNSCutover(
            zone: Lab.zone, servers: [DNSServer(parsing: named.address), DNSServer(parsing: knot.address)],
            key: TSIGKey.load(path: named.keyPath),
            changes: [
                RecordChange(
                    name: Lab.sip, type: "SRV", ttl: 300, from: [Lab.primaryValues[Lab.sip] ?? ""],
                    to: [Lab.secondaryValues[Lab.sip] ?? ""])
            ], verifyTimeout: .seconds(20), logger: SIPZoneLab.testLogger)
        let result = try await cutover.run()
        #expect(result.outcome == .applied)
        #expect(
            try LabTool.dig("127.0.2.54", port, "\(Lab.sip).\(Lab.zone).", "SRV") == [
                Lab.secondaryValues[Lab.sip] ?? ""
            ])
    }

    @Test(
        "hmac-sha512 keys work as well, and the weak hmac-sha1 and hmac-md5 still work (flagged weak)",
        arguments: [("hmac-sha512", TSIGAlgorithm.hmacSHA512), ("hmac-sha1", .hmacSHA1), ("hmac-md5", .hmacMD5)])
    func otherAlgorithms(name: String, algorithm: TSIGAlgorithm) async throws {
        let lab = try Lab.start(algorithm: name)
        defer { lab.stop() }
        let key = try lab.key()
        #expect(key.algorithm == algorithm)
        #expect(key.isWeak == (algorithm != .hmacSHA512))
        let result = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        #expect(result.outcome == .applied)
        #expect(try lab.digBoth() == Lab.expected(Lab.secondaryValues))
    }

    @Test("a second switch is a no-op that says so and changes nothing")
    func secondSwitchIsNoop() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        _ = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        let serial = try lab.serial(0)
        let again = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        #expect(again.outcome == .alreadyAtTarget)
        #expect(again.description.contains("already at their targets"))
        #expect(again.servers.allSatisfy { $0.verified })
        #expect(try lab.serial(0) == serial)
        #expect(try lab.digBoth() == Lab.expected(Lab.secondaryValues))
    }

    @Test("a stale prerequisite is refused (exit 3), nothing changes, and the error shows every server")
    func stalePrerequisite() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let serial = try lab.serial(0)
        var stale = Lab.primaryValues
        stale[Lab.sip] = "0 0 443 sip-old.contoso.test."
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: stale, to: Lab.secondaryValues).run()
        }
        #expect(error.isPrerequisiteFailure)
        #expect(error.exitCode == 3)
        #expect(error.message.contains(lab.named.address))
        #expect(error.message.contains("NXRRSET"))
        #expect(error.servedNow.map(\.server.description) == [lab.named.address, lab.knot.address])
        #expect(error.description.contains("0 0 443 sip.contoso.test."))
        #expect(try lab.serial(0) == serial)
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
    }

    @Test("a wrong secret is BADSIG, named in plain words; nothing changes")
    func wrongSecret() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let real = try lab.key()
        let wrong = try TSIGKey(
            name: real.name, algorithm: real.algorithm, secret: Data(repeating: 7, count: 32).base64EncodedString())
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues, key: wrong).run()
        }
        #expect(error.code == .badSignature)
        #expect(error.exitCode == 1)
        #expect(error.message.contains("BADSIG"))
        #expect(error.message.contains(lab.named.address))
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
    }

    @Test("an unknown key is BADKEY")
    func unknownKey() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let stranger = try TSIGKey(
            name: "someone-else", algorithm: .hmacSHA256, secret: Data(repeating: 1, count: 32).base64EncodedString())
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues, key: stranger).run()
        }
        #expect(error.code == .badKey)
        #expect(error.message.contains("BADKEY"))
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
    }

    @Test("an update the server's policy does not grant is REFUSED, naming the server; nothing changes")
    func refusedByPolicy() async throws {
        // The key may change _sip._tcp only; the cutover also touches _sipinternaltls._tcp.
        let lab = try Lab.start(grant: "name \(Lab.sip).\(Lab.zone). SRV")
        defer { lab.stop() }
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        }
        #expect(error.code == .refused)
        #expect(error.exitCode == 1)
        #expect(error.message.contains("REFUSED"))
        #expect(error.message.contains("update policy"))
        #expect(error.message.contains(lab.named.address))
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))

        // The dry run (the failover's preflight, the drill) finds it before anything changes.
        let serial = try lab.serial(0)
        let early = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).preflight()
        }
        #expect(early.code == .refused, "\(early)")
        #expect(try lab.serial(0) == serial)
    }

    @Test("a server whose clock is 10 minutes ahead answers BADTIME; the error shows the skew")
    func badTime() async throws {
        let lab = try LabDirectory(prefix: "standby-dns-badtime")
        defer { lab.remove() }
        let knot = try KnotServer.startPrimary(
            in: lab, zone: Lab.zone, records: ["\(Lab.sip) 300 IN SRV \(Lab.primaryValues[Lab.sip] ?? "")"],
            clockOffset: 600)
        defer { knot.stop() }
        let cutover = try DNSCutover(
            zone: Lab.zone, servers: [DNSServer(parsing: knot.address)],
            key: TSIGKey.load(path: try #require(knot.keyPath)),
            changes: [
                RecordChange(
                    name: Lab.sip, type: "SRV", ttl: 300, from: [Lab.primaryValues[Lab.sip] ?? ""],
                    to: [Lab.secondaryValues[Lab.sip] ?? ""])
            ], verifyTimeout: .seconds(5), logger: SIPZoneLab.testLogger)
        let error = try await #require(throws: DNSError.self) { try await cutover.run() }
        #expect(error.code == .badTime, "\(error)")
        #expect(error.message.contains("BADTIME"))
        #expect(error.message.contains(knot.address))
        let skew = try #require(error.clockSkew)
        #expect(abs(skew - 600) <= 5, "skew \(skew)")
        #expect(error.message.contains("+\(skew) s"))
        #expect(
            try LabTool.dig(knot.host, knot.port, "\(Lab.sip).\(Lab.zone).", "SRV") == [
                Lab.primaryValues[Lab.sip] ?? ""
            ])
    }

    @Test("a dry run proves the key and the values and changes nothing")
    func dryRun() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let serial = try lab.serial(0)
        let result = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run(dryRun: true)
        #expect(result.outcome == .wouldApply)
        #expect(result.dryRun)
        #expect(try lab.serial(0) == serial)
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
        // Already at the target: the dry run says so, and still proves the key.
        let noop = try await lab.cutover(from: Lab.secondaryValues, to: Lab.primaryValues).run(dryRun: true)
        #expect(noop.outcome == .alreadyAtTarget)

        // A dry run with a wrong expectation fails like the real thing would.
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.secondaryValues, to: Lab.thirdValues).run(dryRun: true)
        }
        #expect(error.isPrerequisiteFailure)
        // And a dry run with a wrong secret proves the key is not accepted.
        let wrong = try TSIGKey(
            name: lab.key().name, algorithm: .hmacSHA256, secret: Data(repeating: 9, count: 32).base64EncodedString())
        let badKey = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues, key: wrong).run(dryRun: true)
        }
        #expect(badKey.code == .badSignature)
        #expect(try lab.serial(0) == serial)
    }

    @Test("a server down during verification: the update applies, verification times out with a per-server report")
    func serverDownDuringVerification() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        lab.knot.stop()
        let started = ContinuousClock.now
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues, verifyTimeout: .seconds(2)).run()
        }
        let elapsed = ContinuousClock.now - started
        #expect(error.code == .verificationTimedOut)
        #expect(error.exitCode == 1)
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(10))
        #expect(error.message.contains("the update was applied on \(lab.named.address)"))
        #expect(error.message.contains(lab.knot.address))
        #expect(error.reports.count == 2)
        let namedReport = try #require(error.reports.first)
        let knotReport = try #require(error.reports.last)
        #expect(namedReport.verified)
        let namedSerial = try lab.serial(0)
        #expect(namedReport.soaSerial == namedSerial)
        #expect(!knotReport.verified)
        #expect(knotReport.problem?.contains("refused the connection") == true)
        #expect(error.description.contains(lab.knot.address))
        #expect(try lab.dig(0, Lab.sip) == [(Lab.secondaryValues[Lab.sip] ?? "")])
    }

    @Test("a hung server (SIGSTOP) times out instead of blocking the controller")
    func hungServer() async throws {
        let lab = try Lab.start()
        defer {
            lab.knot.resume()
            lab.stop()
        }
        lab.knot.suspend()
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues, verifyTimeout: .seconds(3)).run()
        }
        #expect(error.code == .verificationTimedOut)
        // The hung server's blocked queries do not hold up the healthy one's: held up, it would
        // take the whole verification timeout.
        let namedReport = try #require(error.reports.first)
        #expect(namedReport.verified)
        #expect((namedReport.elapsed ?? .seconds(99)) < .seconds(2))
        let knotReport = try #require(error.reports.last)
        #expect(!knotReport.verified)
        #expect(knotReport.problem?.contains("did not answer in time") == true)
    }

    @Test("the primary down: the update fails with connection refused, naming it")
    func primaryDown() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        lab.named.stop()
        let error = try await #require(throws: DNSError.self) {
            try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        }
        #expect(error.code == .connectionRefused)
        #expect(error.server?.description == lab.named.address)
        #expect(error.message.contains(lab.named.address))
    }

    @Test("two controllers at once: exactly one wins, the other gets a failed prerequisite and changes nothing")
    func twoControllers() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let elsewhere = Lab.thirdValues
        let first = try lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues)
        let second = try lab.cutover(from: Lab.primaryValues, to: elsewhere)

        func attempt(_ cutover: DNSCutover) async -> Result<CutoverResult, DNSError> {
            do throws(DNSError) { return .success(try await cutover.run()) } catch { return .failure(error) }
        }
        async let a = attempt(first)
        async let b = attempt(second)
        let results = await [a, b]
        let winners = results.compactMap { try? $0.get() }
        let losers = results.compactMap { result -> DNSError? in
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(winners.count == 1)
        #expect(winners.first?.outcome == .applied)
        #expect(losers.count == 1)
        #expect(losers.first?.isPrerequisiteFailure == true)
        #expect(losers.first?.exitCode == 3)
        // The winner's values are what both servers serve; the loser left no trace.
        let winnerValues = (try? results[0].get()) != nil ? Lab.secondaryValues : elsewhere
        #expect(try lab.digBoth() == Lab.expected(winnerValues))
    }

    @Test("prepare lowers the TTLs keeping the values; restore puts them back")
    func ttlPrepareAndRestore() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let servers = try lab.servers
        let records = [Lab.internalTLS, Lab.sip].map { RecordTTL(name: $0, type: "SRV", ttl: 60) }
        let prepare = try await DNSCutover.retime(
            zone: Lab.zone, servers: servers, key: lab.key(), records: records, logger: lab.logger)
        #expect(try await prepare.run().outcome == .applied)
        for server in [0, 1] {
            #expect(
                try LabTool.digTTL(
                    server == 0 ? lab.named.host : lab.knot.host, server == 0 ? lab.named.port : lab.knot.port,
                    "\(Lab.sip).\(Lab.zone).", "SRV") == 60)
        }
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
        // Preparing again is a no-op.
        let again = try await DNSCutover.retime(
            zone: Lab.zone, servers: servers, key: lab.key(), records: records, logger: lab.logger)
        #expect(try await again.run().outcome == .alreadyAtTarget)

        let restore = try await DNSCutover.retime(
            zone: Lab.zone, servers: servers, key: lab.key(),
            records: records.map { RecordTTL(name: $0.name, type: $0.type, ttl: 300) }, logger: lab.logger)
        #expect(try await restore.run().outcome == .applied)
        #expect(try LabTool.digTTL(lab.knot.host, lab.knot.port, "\(Lab.internalTLS).\(Lab.zone).", "SRV") == 300)
        #expect(try lab.digBoth() == Lab.expected(Lab.primaryValues))
    }

    @Test("query returns the record set, TTL, AA bit, rcode and SOA serial")
    func query() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let client = DNSClient(logger: lab.logger)
        let servers = try lab.servers
        let answer = try await client.query(servers[1], name: Lab.sip, type: "SRV", zone: Lab.zone)
        #expect(answer.rdata == [(Lab.primaryValues[Lab.sip] ?? "")])
        #expect(answer.ttl == 300)
        #expect(answer.authoritative)
        #expect(answer.rcode == .noError)
        let knotSerial = try lab.serial(1)
        #expect(answer.soaSerial == knotSerial)
        let missing = try await client.query(servers[0], name: "_nothing._tcp", type: "SRV", zone: Lab.zone)
        #expect(missing.rdata.isEmpty)
        #expect(missing.rcode == .nxDomain)
        let outside = try await client.query(servers[0], name: "example.org.", type: "SRV")
        #expect(!outside.authoritative)
    }

    @Test("survey shows each record on each server without a key; results encode to JSON without the secret")
    func surveyAndJSON() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let result = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        let states = await DNSCutover.survey(
            zone: Lab.zone, servers: try lab.servers,
            records: [RecordSetName(name: Lab.sip, type: "srv"), RecordSetName(name: Lab.internalTLS, type: "SRV")],
            logger: lab.logger)
        #expect(states.count == 2)
        for state in states {
            #expect(state.problem == nil)
            #expect(
                state.records.map(\.rdata) == [
                    [Lab.secondaryValues[Lab.sip] ?? ""], [Lab.secondaryValues[Lab.internalTLS] ?? ""],
                ])
            #expect(state.records.allSatisfy { $0.holds(["0 0 443 SIP-DR.contoso.test."]) } == false)
            #expect(state.records[0].holds(["0  0 443 SIP-DR.contoso.test."]))
            #expect(state.soaSerial != nil)
        }
        let encoder = JSONEncoder()
        let json = String(decoding: try encoder.encode(result), as: UTF8.self)
        #expect(json.contains("\"outcome\":\"applied\""))
        #expect(json.contains("\"server\":\"\(lab.knot.address)\""))
        #expect(json.contains("NOERROR"))
        let keyText = String(decoding: try Data(contentsOf: URL(fileURLWithPath: lab.named.keyPath)), as: UTF8.self)
        let secret = try #require(keyText.split(separator: "\"").dropFirst(3).first.map(String.init))
        #expect(!json.contains(secret))

        lab.knot.stop()
        let down = await DNSCutover.survey(
            zone: Lab.zone, servers: try lab.servers, records: [RecordSetName(name: Lab.sip, type: "SRV")],
            logger: lab.logger)
        #expect(down[0].problem == nil)
        #expect(down[1].problem?.contains("refused the connection") == true)
    }

    @Test("the secret never reaches the logs or the errors")
    func secretNeverLogged() async throws {
        let lab = try Lab.start()
        defer { lab.stop() }
        let key = try lab.key()
        let secret = try #require(
            String(decoding: try Data(contentsOf: URL(fileURLWithPath: lab.named.keyPath)), as: UTF8.self)
                .split(separator: "\"").dropFirst(3).first.map(String.init))
        #expect(secret.count > 20)
        let result = try await lab.cutover(from: Lab.primaryValues, to: Lab.secondaryValues).run()
        let stale = await #expect(throws: DNSError.self) {
            try await lab.cutover(from: Lab.thirdValues, to: Lab.primaryValues, key: key).run(dryRun: true)
        }
        _ = stale
        #expect(!lab.logs.all.isEmpty)
        for text in lab.logs.all + [result.description, "\(key)", String(reflecting: key)] {
            #expect(!text.contains(secret))
        }
    }
}
