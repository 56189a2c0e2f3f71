import Foundation
import StandbyBase
import StandbyLab
import StandbyReplication
import StandbyTransport
import Testing

/// A share on the lab's Active Directory domain controller, read with Kerberos as the service
/// account (the GSS-TSIG account): its keytab made into a ticket cache of this process, no
/// kinit. One domain controller per machine: `start` waits for the lock the other AD tests hold.
@Suite(.tags(.server), .serialized)
struct ReplicateSMBKerberosTests {
    struct Domain {
        let fixture: StoreFixture
        let dc: SambaDomainController
        let share: String

        static func start() async throws -> Domain {
            let fixture = try StoreFixture()
            do {
                let share = try fixture.lab.directory("dc-share")
                // Provisioning blocks for seconds: not on the cooperative pool.
                let dc = try await Blocking.run { _ in
                    try SambaDomainController.start(in: fixture.lab, share: share)
                }
                return Domain(fixture: fixture, dc: dc, share: share)
            } catch {
                fixture.remove()
                throw error
            }
        }

        func stop() {
            dc.stop()
            fixture.remove()
        }

        func options(keytab: String? = nil, principal: String? = nil) -> ReplicateOptions {
            ReplicateOptions(
                transport: TransportOptions(
                    smb: SMBOptions(
                        kerberos: KerberosAccount(
                            principal: principal ?? dc.principal, keytab: keytab ?? dc.keytabPath,
                            krb5Conf: dc.krb5ConfPath))))
        }
    }

    @Test func aShareOnTheDomainControllerWithKerberos() async throws {
        let domain = try await Domain.start()
        defer { domain.stop() }
        let path = domain.share + "/db.bak"
        let pages = 2048  // 16 MiB
        let size = Int64(pages * pageSize)
        try writeDatabase(path, pages: pages)
        let spec = SetSpec(name: "sql", sources: [domain.dc.shareURL("db.bak")])
        let first = try await domain.fixture.store.replicate(set: spec, options: domain.options())
        #expect(first.version.size == size)
        #expect(first.version.captured == Date(timeIntervalSince1970: 1_700_000_000))

        try rewritePages(path, count: 10, seed: 9, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [path], logger: testLogger)
        let second = try await domain.fixture.store.replicate(set: spec, options: domain.options())
        #expect(second.filesByIndex == 1)
        #expect(second.bytesReceived < size / 10, "day 2 received \(second.bytesReceived) of \(size)")
        let out = domain.fixture.lab.file("out")
        _ = try await domain.fixture.store.restore(set: "sql", to: out)
        #expect(try contents(out + "/db.bak") == contents(path))

        // The other account's keytab holds no key of the service account: refused, naming both.
        let error = await #expect(throws: ReplicationError.self) {
            try await domain.fixture.store.replicate(
                set: SetSpec(name: "other", sources: [domain.dc.shareURL("db.bak")]),
                options: domain.options(keytab: domain.dc.unprivilegedKeytabPath))
        }
        #expect(error?.code == .loginDenied, "\(String(describing: error))")
        #expect(error?.description.contains(domain.dc.principal) == true, "\(String(describing: error))")
        #expect(try await domain.fixture.store.versions(set: "other").isEmpty)
    }
}
