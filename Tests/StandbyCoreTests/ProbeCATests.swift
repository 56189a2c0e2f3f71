import Foundation
import Logging
import StandbyLab
import StandbyProbes
import Testing

@testable import StandbyCore

/// A tls probe of the topology trusts the internal CA its `ca_file` names, and only then.
@Suite(.tags(.server)) struct ProbeCATests {
    @Test func caFileFromTheTopologyIsTrusted() async throws {
        let lab = try LabDirectory(prefix: "probe-ca")
        defer { lab.remove() }
        let authority = try LabCertificateAuthority.create(in: lab)
        let server = try TLSServer.start(in: lab, certificate: .valid, authority: authority)
        defer { server.stop() }
        let text = try Fixture.minimal([
            (
                "{ name: fe-secondary, tcp: \"mtl-fe01.fabrikam.com:5061\", site: secondary }",
                "{ name: fe-secondary, tls: \"\(server.address)\", server_name: localhost, ca_file: \(authority.certificatePath), site: secondary }"
            )
        ])
        let spec = try #require(try topology(text).probe(named: "fe-secondary"))
        #expect(spec.caFile == authority.certificatePath)
        let runner = ProbeRunner(logger: Logger(label: "test"))
        let trusted = await runner.run(try ProbeAdapter.probe(spec, defaultTimeout: TimeSpan(seconds: 5)))
        #expect(trusted.outcome == .up, Comment(rawValue: trusted.detail))
        var untrusted = spec
        untrusted.caFile = nil
        let refused = await runner.run(try ProbeAdapter.probe(untrusted, defaultTimeout: TimeSpan(seconds: 5)))
        #expect(refused.outcome == .down, Comment(rawValue: refused.detail))
    }
}
