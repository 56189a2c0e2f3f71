import Foundation
import StandbyDNS
import StandbyLab
import Testing

@Suite("TSIG key files")
struct TSIGKeyTests {
    static let secret = "uPf8GuC+ZFNbi0jz0lLSBuZOqvNtYcv8v/trTj8ivRg="

    func write(_ text: String, mode: Int = 0o600) throws -> (LabDirectory, String) {
        let lab = try LabDirectory(prefix: "standby-key")
        try lab.write("failover.key", text, mode: mode)
        return (lab, lab.file("failover.key"))
    }

    @Test("reads the file tsig-keygen writes")
    func tsigKeygenFormat() throws {
        let (lab, path) = try write(
            """
            key "failover-key" {
            \talgorithm hmac-sha256;
            \tsecret "\(Self.secret)";
            };

            """)
        defer { lab.remove() }
        let key = try TSIGKey.load(path: path)
        #expect(key.name == "failover-key")
        #expect(key.algorithm == .hmacSHA256)
        #expect(!key.isWeak)
        #expect(key.source == path)
    }

    @Test("a key file readable by group or others is refused, naming the file and its mode")
    func openPermissions() throws {
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let (lab, path) = try write("key \"k\" { algorithm hmac-sha256; secret \"\(Self.secret)\"; };", mode: mode)
            defer { lab.remove() }
            let error = try #require(throws: DNSError.self) { try TSIGKey.load(path: path) }
            #expect(error.code == .keyPermissions)
            #expect(error.message.contains(path))
            #expect(error.message.contains(String(format: "%04o", mode)))
            #expect(!error.description.contains(Self.secret))
        }
        let (lab, path) = try write("key \"k\" { algorithm hmac-sha256; secret \"\(Self.secret)\"; };", mode: 0o400)
        defer { lab.remove() }
        #expect(try TSIGKey.load(path: path).name == "k")
    }

    @Test("a missing key file names the file")
    func missingFile() throws {
        let error = try #require(throws: DNSError.self) { try TSIGKey.load(path: "/nonexistent/failover.key") }
        #expect(error.code == .keyFile)
        #expect(error.message.contains("/nonexistent/failover.key"))
    }

    @Test("comments, odd spacing, one line, upper case and trailing dots are accepted")
    func edgeCasesAccepted() throws {
        let text = """
            # made by tsig-keygen
            // another comment
            /* a block
               comment */ key   "Failover.Key." {algorithm HMAC-SHA512;secret
              "\(Self.secret)" ;} ;
            """
        let keys = try TSIGKey.parse(text, source: "inline")
        #expect(keys.count == 1)
        #expect(keys[0].name == "Failover.Key")
        #expect(keys[0].algorithm == .hmacSHA512)
        let md5 = try TSIGKey.parse(
            "key k { algorithm hmac-md5.sig-alg.reg.int; secret \"\(Self.secret)\"; };", source: "inline")
        #expect(md5[0].algorithm == .hmacMD5)
        #expect(md5[0].isWeak)
        let sha1 = try TSIGKey.parse("key k { algorithm hmac-sha1; secret \"\(Self.secret)\"; };", source: "inline")
        #expect(sha1[0].isWeak)
    }

    @Test("several keys: the one named is picked, otherwise the file is refused")
    func severalKeys() throws {
        let (lab, path) = try write(
            """
            key "one" { algorithm hmac-sha256; secret "\(Self.secret)"; };
            key "two" { algorithm hmac-sha512; secret "\(Self.secret)"; };
            """)
        defer { lab.remove() }
        #expect(try TSIGKey.load(path: path, name: "two").algorithm == .hmacSHA512)
        let error = try #require(throws: DNSError.self) { try TSIGKey.load(path: path) }
        #expect(error.message.contains("one, two"))
        #expect(throws: DNSError.self) { try TSIGKey.load(path: path, name: "three") }
    }

    @Test(
        "malformed key files are refused with the file and line, never the secret",
        arguments: [
            ("key \"k\" { algorithm hmac-sha384; secret \"SECRET\"; };", "hmac-sha384"),
            ("key \"k\" { algorithm hmac-sha256; };", "no secret"),
            ("key \"k\" { secret \"SECRET\"; };", "no algorithm"),
            ("key \"k\" { algorithm hmac-sha256; secret \"SECRET\" };", "expected ';'"),
            ("key \"k\" { algorithm hmac-sha256; secret \"SECRET\"; ", "not closed"),
            ("key \"k\" { algorithm hmac-sha256; secret \"SECRET; };", "not closed"),
            ("key \"k\" { algorithm hmac-sha256; color \"SECRET\"; secret \"SECRET\"; };", "unknown statement"),
            ("options { };", "expected a key clause"),
            ("", "no key clause"),
            ("key \"k\" { algorithm hmac-sha256; secret \"not base64 SECRET!\"; };", "not valid base64"),
        ])
    func malformed(text: String, expected: String) throws {
        let error = try #require(throws: DNSError.self) { try TSIGKey.parse(text, source: "site/keys/failover.key") }
        #expect(error.code == .keyFile)
        #expect(error.message.contains(expected))
        #expect(error.message.contains("site/keys/failover.key"))
        #expect(!error.description.contains("SECRET"))
    }

    @Test("the secret never appears in a description, a debug description, a dump or an interpolation")
    func secretRedacted() throws {
        let key = try TSIGKey(name: "failover-key", algorithm: .hmacSHA256, secret: Self.secret)
        var dumped = ""
        dump(key, to: &dumped)
        struct Holder { let key: TSIGKey }
        var dumpedHolder = ""
        dump(Holder(key: key), to: &dumpedHolder)
        let texts = [
            key.description, key.debugDescription, "\(key)", String(describing: key), String(reflecting: key), dumped,
            dumpedHolder, "\(Holder(key: key))", "\([key])",
        ]
        for text in texts {
            #expect(!text.contains(Self.secret), "leaked in: \(text)")
            #expect(!text.contains("uPf8Gu"))
        }
        #expect(key.description.contains("failover-key"))
        #expect(key.description.contains("redacted"))
    }
}

@Suite("DNS server addresses")
struct DNSServerTests {
    @Test(
        "parses the forms of dns.servers",
        arguments: [
            ("10.0.0.53", "10.0.0.53", UInt16(53)),
            ("10.1.0.53:53", "10.1.0.53", 53),
            ("[::1]:5353", "::1", 5353),
            ("[::1]", "::1", 53),
            ("::1", "::1", 53),
            ("ns1.contoso.com:5300", "ns1.contoso.com", 5300),
            (" 127.0.0.1:15353 ", "127.0.0.1", 15353),
        ])
    func parses(text: String, host: String, port: UInt16) throws {
        let server = try DNSServer(parsing: text)
        #expect(server.host == host)
        #expect(server.port == port)
    }

    @Test("round-trips through its description")
    func description() throws {
        #expect(try DNSServer(parsing: "[::1]:5353").description == "[::1]:5353")
        #expect(try DNSServer(parsing: "10.0.0.53:53").description == "10.0.0.53")
        #expect(try DNSServer(parsing: "10.0.0.53:5300").description == "10.0.0.53:5300")
    }

    @Test(
        "refuses bad addresses",
        arguments: ["", "10.0.0.53:", "10.0.0.53:0", "10.0.0.53:70000", "[::1", "[]:53", ":53", "[::1]x"])
    func refuses(text: String) {
        #expect(throws: DNSError.self) { try DNSServer(parsing: text) }
    }
}

@Suite("record changes")
struct RecordChangeTests {
    @Test("values are compared in canonical form; bad values and names outside the zone are refused")
    func validation() throws {
        let key = try TSIGKey(name: "k", algorithm: .hmacSHA256, secret: TSIGKeyTests.secret)
        let logger = SIPZoneLab.testLogger
        let cutover = try DNSCutover(
            zone: "contoso.test", servers: [DNSServer(host: "127.0.0.1")], key: key,
            changes: [
                RecordChange(
                    name: "_sip._tcp", type: "srv", ttl: 300, from: ["0  0 443 SIP.contoso.test."],
                    to: ["0 0 443 sip-dr.contoso.test."])
            ],
            logger: logger)
        #expect(cutover.changes[0].from == ["0 0 443 SIP.contoso.test."])
        #expect(cutover.changes[0].to == ["0 0 443 sip-dr.contoso.test."])
        let relative = try DNSCutover(
            zone: "contoso.test", servers: [DNSServer(host: "127.0.0.1")], key: key,
            changes: [
                RecordChange(name: "_sip._tcp", type: "SRV", ttl: 300, from: [], to: ["0 0 443 sip-dr.contoso.test"])
            ],
            logger: logger)
        #expect(relative.changes[0].to == ["0 0 443 sip-dr.contoso.test."])
        #expect(cutover.changes[0].type == "SRV")
        #expect(throws: DNSError.self) {
            try DNSCutover(
                zone: "contoso.test", servers: [DNSServer(host: "127.0.0.1")], key: key,
                changes: [RecordChange(name: "_sip._tcp", type: "SRV", ttl: 300, from: ["not an srv"], to: [])],
                logger: logger)
        }
        #expect(throws: DNSError.self) {
            try DNSCutover(
                zone: "contoso.test", servers: [DNSServer(host: "127.0.0.1")], key: key,
                changes: [RecordChange(name: "_sip._tcp.example.org.", type: "SRV", ttl: 300, from: [], to: [])],
                logger: logger)
        }
        #expect(throws: DNSError.self) {
            try DNSCutover(zone: "contoso.test", servers: [], key: key, changes: cutover.changes, logger: logger)
        }
    }
}
