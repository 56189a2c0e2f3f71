import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The lab's servers and tools start with no descriptor of the test runner but their own: a file
/// another test has open for writing at that instant (a step script, say) must not stay open in
/// a server, or executing it fails with "Text file busy" for as long as the server runs.
@Suite(.tags(.server)) struct LabSpawnTests {
    @Test func serversAndToolsInheritNoOpenFileOfTheRunner() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let script = lab.file("being-written.sh")
        let fd = open(script, O_WRONLY | O_CREAT, 0o755)  // no O_CLOEXEC, as Foundation's writes
        #expect(fd >= 0)
        defer { close(fd) }

        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let held = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(nginx.process.pid)/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(nginx.process.pid)/fd/\($0)")
        }
        #expect(!held.isEmpty, "nginx's descriptors were read")
        #expect(!held.contains(script), "\(held)")

        let ls = try Programs.locate("ls", package: "coreutils")
        let listing = try LabTool.check(ls, ["-l", "/proc/self/fd/"])
        #expect(!listing.contains(script), "\(listing)")
    }
}
