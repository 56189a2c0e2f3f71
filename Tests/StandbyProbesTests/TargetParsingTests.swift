import Testing

@testable import StandbyProbes

@Suite struct TargetParsingTests {
    @Test func hostPortForms() throws {
        #expect(
            try HostPort(parsing: "red-sql01.contoso.com:1433") == HostPort(host: "red-sql01.contoso.com", port: 1433))
        #expect(try HostPort(parsing: "[::1]:5061") == HostPort(host: "::1", port: 5061))
        #expect(try HostPort(parsing: "[::1]", defaultPort: 53) == HostPort(host: "::1", port: 53))
        #expect(try HostPort(parsing: "fe80::1", defaultPort: 53) == HostPort(host: "fe80::1", port: 53))
        #expect(try HostPort(parsing: "10.0.0.53", defaultPort: 53).description == "10.0.0.53:53")
        #expect(HostPort(host: "::1", port: 5060).description == "[::1]:5060")
    }

    @Test(arguments: ["", "host", "host:0", "host:70000", "[::1", "[::1]x", "a b:1", "host:port"])
    func badHostPorts(_ text: String) {
        #expect(throws: ProbeError.self) { try HostPort(parsing: text) }
    }

    @Test func topologyForms() throws {
        #expect(
            try ProbeTarget.parse(kind: "tcp", "red-sql01.contoso.com:1433")
                == .tcp(HostPort(host: "red-sql01.contoso.com", port: 1433)))
        guard case .tls(let tls) = try ProbeTarget.parse(kind: "tls", "[2001:db8::5]:443") else {
            Issue.record("not tls")
            return
        }
        #expect(tls.address == HostPort(host: "2001:db8::5", port: 443))
        #expect(tls.expectedName == "2001:db8::5")
        #expect(
            try TLSTarget(parsing: "10.0.0.5:443", serverName: "pool01.contoso.com").expectedName
                == "pool01.contoso.com")
        guard case .http(let http) = try ProbeTarget.parse(kind: "http", "https://pool01.contoso.com/health") else {
            Issue.record("not http")
            return
        }
        #expect(http.accepts(status: 204) && !http.accepts(status: 302))
        #expect(try HTTPTarget(url: "http://x/", expectStatus: [302]).accepts(status: 302))
        #expect(throws: ProbeError.self) { try ProbeTarget.parse(kind: "http", "ftp://x/") }
        #expect(throws: ProbeError.self) { try ProbeTarget.parse(kind: "icmp", "x") }
    }

    @Test func sipURIs() throws {
        let tls = try SIPTarget(parsing: "sip:pool01.contoso.com:5061;transport=tls")
        #expect(tls.address == HostPort(host: "pool01.contoso.com", port: 5061) && tls.transport == .tls)
        let udp = try SIPTarget(parsing: "sip:pool01.contoso.com")
        #expect(udp.address.port == 5060 && udp.transport == .udp)
        let tcp = try SIPTarget(parsing: "sip:probe@[::1];transport=TCP")
        #expect(tcp.address == HostPort(host: "::1", port: 5060) && tcp.transport == .tcp)
        let sips = try SIPTarget(parsing: "sips:pool01.contoso.com")
        #expect(sips.address.port == 5061 && sips.transport == .tls)
        #expect(throws: ProbeError.self) { try SIPTarget(parsing: "http://pool01") }
        #expect(throws: ProbeError.self) { try SIPTarget(parsing: "sip:pool01;transport=sctp") }
        #expect(throws: ProbeError.self) { try SIPTarget(parsing: "sip:") }
    }

    @Test func dnsTargets() throws {
        let target = try DNSTarget(server: "127.0.0.1:5353", name: "_sipinternaltls._tcp.contoso.com", type: "srv")
        #expect(target.server == HostPort(host: "127.0.0.1", port: 5353) && target.type == .SRV)
        #expect(try DNSTarget(server: "[::1]", name: "contoso.com", type: "SOA").server.port == 53)
        #expect(throws: ProbeError.self) { try DNSTarget(server: "127.0.0.1", name: "x", type: "BOGUS") }
        #expect(throws: ProbeError.self) { try DNSTarget(server: "127.0.0.1", name: "", type: "A") }
    }
}

@Suite struct SIPMessageTests {
    @Test func requestCarriesEveryMandatoryHeader() throws {
        let target = try SIPTarget(parsing: "sip:pool01.contoso.com:5061;transport=tls")
        let request = SIPOptionsRequest(target: target, local: HostPort(host: "::1", port: 40000))
        let text = String(decoding: request.encoded(), as: UTF8.self)
        #expect(text.hasPrefix("OPTIONS sip:pool01.contoso.com:5061;transport=tls SIP/2.0\r\n"))
        #expect(text.contains("Via: SIP/2.0/TLS [::1]:40000;rport;branch=z9hG4bK"))
        for header in [
            "Max-Forwards: 70", "From: <sip:standby@[::1]>;tag=", "To: <sip:pool01.contoso.com:5061>", "Call-ID: ",
            "CSeq: 1 OPTIONS", "Contact: <sip:standby@[::1]:40000;transport=tls>", "Content-Length: 0",
        ] {
            #expect(text.contains("\r\n" + header), "missing \(header)")
        }
        #expect(text.hasSuffix("\r\n\r\n"))
    }

    @Test func parsesAFinalResponseWithBody() throws {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKabc;rport=5\r\nl: 4\r\n\r\nbodyNEXT"
        guard case .complete(let response, let consumed) = try SIPResponse.parse(Array(text.utf8)) else {
            Issue.record("incomplete")
            return
        }
        #expect(response.status == 200 && response.reason == "OK" && response.topBranch == "z9hG4bKabc")
        #expect(consumed == text.utf8.count - 4)
    }

    @Test func incompleteAndMalformed() throws {
        guard case .incomplete = try SIPResponse.parse(Array("SIP/2.0 180 Ri".utf8)) else {
            Issue.record("expected incomplete")
            return
        }
        guard case .incomplete = try SIPResponse.parse(Array("SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8))
        else {
            Issue.record("expected incomplete body")
            return
        }
        for garbage in [
            "HTTP/1.1 400 Bad Request\r\n\r\n", "SIP/2.0 2000 OK\r\n\r\n", "SIP/2.0 200 OK\r\nNoColon\r\n\r\n",
            "\u{1}\u{2}garbage",
        ] {
            #expect(throws: ProbeFailure.self, "\(garbage)") { try SIPResponse.parse(Array(garbage.utf8)) }
        }
    }
}
