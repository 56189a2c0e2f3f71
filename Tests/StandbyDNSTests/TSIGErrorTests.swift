import Testing

@testable import StandbyDNS

@Suite("TSIG errors in plain words")
struct TSIGErrorTests {
    let server = DNSServer(host: "10.0.0.53")
    var key: TSIGKey {
        get throws { try TSIGKey(name: "failover-key", algorithm: .hmacSHA256, secret: TSIGKeyTests.secret) }
    }

    /// 48-bit network-order time, as in a TSIG record.
    func time(_ seconds: Int64) -> [UInt8] { (0..<6).reversed().map { UInt8((seconds >> (8 * $0)) & 0xff) } }

    @Test("BADTIME reports the clock skew the server told us (BIND puts its time in Other Data)")
    func badTimeWithOtherData() throws {
        let ours: Int64 = 1_800_000_000
        let error = DNSClient.tsigError(
            18, rcode: .notAuth, otherData: time(ours + 420), replyTimeSigned: ours, signedAt: ours, server: server,
            key: try key)
        #expect(error.code == .badTime)
        #expect(error.clockSkew == 420)
        #expect(error.message.contains("10.0.0.53"))
        #expect(error.message.contains("BADTIME"))
        #expect(error.message.contains("+420 s"))
        #expect(error.exitCode == 1)
    }

    @Test("BADTIME from a server that signs with its own time; and without any time at all")
    func badTimeOtherForms() throws {
        let ours: Int64 = 1_800_000_000
        let behind = DNSClient.tsigError(
            18, rcode: .notAuth, otherData: [], replyTimeSigned: ours - 900, signedAt: ours, server: server,
            key: try key)
        #expect(behind.clockSkew == -900)
        #expect(behind.message.contains("-900 s"))
        let unknown = DNSClient.tsigError(
            18, rcode: .notAuth, otherData: [], replyTimeSigned: ours, signedAt: ours, server: server, key: try key)
        #expect(unknown.clockSkew == nil)
        #expect(unknown.code == .badTime)
    }

    @Test("BADSIG and BADKEY name the key, never its secret")
    func badSignatureAndKey() throws {
        for (code, expected) in [(UInt16(16), DNSError.Code.badSignature), (17, .badKey)] {
            let error = DNSClient.tsigError(
                code, rcode: .notAuth, otherData: [], replyTimeSigned: 0, signedAt: 0, server: server, key: try key)
            #expect(error.code == expected)
            #expect(error.message.contains("failover-key"))
            #expect(!error.description.contains(TSIGKeyTests.secret))
        }
    }

    @Test(
        "response codes map to plain words and the exit code",
        arguments: [
            (DNSResponseCode.nxRRset, DNSError.Code.prerequisiteFailed, Int32(3)),
            (.yxRRset, .prerequisiteFailed, 3),
            (.nxDomain, .prerequisiteFailed, 3),
            (.refused, .refused, 1),
            (.formatError, .formatError, 1),
            (.serverFailure, .serverFailure, 1),
            (.notAuth, .notAuthoritative, 1),
            (.notZone, .notZone, 1),
        ])
    func rcodes(rcode: DNSResponseCode, code: DNSError.Code, exit: Int32) throws {
        let error = DNSClient.rcodeError(rcode, server: server, zone: "contoso.com.", key: try key, unsigned: false)
        #expect(error.code == code)
        #expect(error.exitCode == exit)
        #expect(error.isPrerequisiteFailure == (exit == 3))
        #expect(error.message.contains("10.0.0.53"))
        #expect(error.message.contains(rcode.description))
    }
}
