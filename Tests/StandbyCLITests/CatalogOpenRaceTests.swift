import Foundation
import StandbyLab
import Testing

/// Controllers of a cluster share one store (`sites.secondary.store`), so its catalog is opened by
/// several processes at once: at boot of both nodes, or a `verify` typed on one while the other
/// replicates. A fresh catalog is the worst case: every opener creates it, switches it to WAL and
/// migrates it at the same instant.
@Suite("The shared catalog opened by several real processes at once", .tags(.server))
struct CatalogOpenRaceTests {
    @Test("eight `standby verify` processes open a fresh shared catalog at once, 12 times: none fails")
    func concurrentOpens() async throws {
        let lab = try LabDirectory(prefix: "catalog-race")
        defer { lab.remove() }
        let standby = try StandbyRunner.locate()
        var yaml = SiteYAML(deployment: "catalograce", domain: "example.test")
        let store = lab.file("store")
        yaml.secondary.store = store
        try yaml.write(in: lab)
        let site = lab.file("site")
        let processes = 8
        let rounds = 12
        var failures: [String] = []
        for round in 1...rounds {
            // A fresh catalog each round, so every round races on its creation and the WAL switch.
            try? FileManager.default.removeItem(atPath: store)
            let running = try (1...processes).map { index in
                try standby.start(["verify", site, "--state", lab.file("state-\(round)-\(index)")], in: lab)
            }
            for (index, process) in running.enumerated() {
                let result = await process.wait()
                if result.status != 0 || result.stderr.contains("locked") {
                    failures.append("round \(round), process \(index + 1): \(result)")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) of \(processes * rounds) opens failed:\n\(failures.prefix(3))")
        #expect(FileManager.default.fileExists(atPath: store + "/catalog.sqlite"))
    }
}
