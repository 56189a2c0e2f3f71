import Foundation
import StandbyLab
import StandbyReplication
import Testing

/// A store whose disk fills up in the middle of a replicate, on a real (small) filesystem.
@Suite(.serialized) struct FullDiskTests {
    @Test func aFullDiskFailsTheRunNamingTheSetAndLosesNothing() async throws {
        let lab = try LabDirectory(prefix: "standby-full-disk")
        defer { lab.remove() }
        // Room for the catalog, a small set and one 32 MiB pack, not for the 80 MiB set.
        let disk = try SmallFilesystem.mount(at: lab.file("disk"), bytes: 48 << 20)
        defer { disk.unmount() }
        let store = try ReplicationStore.open(directory: disk.path + "/store", logger: testLogger)

        let small = lab.file("config.zip")
        try writeDatabase(small, pages: 128, seed: 3)
        let config = SetSpec(name: "config", sources: [URL(fileURLWithPath: small)])
        let kept = try await store.replicate(set: config)

        let big = lab.file("sql.bak")
        try writeDatabase(big, pages: 10240, seed: 4)
        let sql = SetSpec(name: "sql", sources: [URL(fileURLWithPath: big)])
        let error = try await #require(throws: ReplicationError.self) { try await store.replicate(set: sql) }
        #expect(error.code == .storeFull)
        #expect(error.set == "sql")
        #expect(error.description.contains("set sql:"), "\(error)")
        #expect(error.description.contains("disk is full"), "\(error)")

        // Nothing half-visible; the earlier set is whole.
        #expect(try await store.versions(set: "sql").isEmpty)
        let status = try await store.status()
        #expect(status.first { $0.name == "config" }?.newestVerified?.id == kept.version.id)
        #expect(status.first { $0.name == "sql" }?.newestVerified == nil)
        let verify = try await store.verify(readData: true)
        #expect(verify.problems.isEmpty, "\(verify.problems)")
        _ = try await store.restore(set: "config", to: lab.file("out"))
        #expect(try contents(lab.file("out/config.zip")) == contents(small))

        // The operator frees space: the next run finishes, keeping what the failed one stored.
        try disk.resize(bytes: 160 << 20)
        let again = try await store.replicate(set: sql)
        #expect(again.version.newBytes <= Int64(10240 * pageSize) - (32 << 20), "stored \(again.version.newBytes) anew")
        _ = try await store.restore(set: "sql", to: lab.file("out"))
        #expect(try contents(lab.file("out/sql.bak")) == contents(big))
        let clean = try await store.verify(readData: true)
        #expect(clean.problems.isEmpty, "\(clean.problems)")
    }
}
