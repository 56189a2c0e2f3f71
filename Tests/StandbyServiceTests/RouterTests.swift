import Foundation
import Hummingbird
import HummingbirdTesting
import StandbyCore
import StandbyService
import Testing

/// The endpoint's router in process, through Hummingbird's test client (no socket): every path,
/// the methods it refuses and the bearer token, against the same snapshot the rendering tests
/// use. The live tests (`ServiceEndpointTests`) show the same through `standby run`.
@Suite struct RouterTests {
    static let token = BearerToken(value: "s3cret-token-for-the-router")

    func withRouter(token: BearerToken?, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void)
        async throws
    {
        let snapshot = RenderingTests.snapshot()
        let app = Application(router: ServiceEndpoint.router(token: token, snapshot: { snapshot }))
        try await app.test(.router, body)
    }

    @Test("GET on each path answers with its content type; HEAD answers like GET without a body")
    func everyPath() async throws {
        try await withRouter(token: nil) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ok\n")
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                #expect(String(buffer: response.body).contains("standby_set_rpo_target_seconds{"))
            }
            try await client.execute(uri: "/status.json", method: .get) { response in
                #expect(response.status == .ok)
                let object = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(object?["deployment"] as? String == "contoso")
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.cacheControl] == "no-store")
                #expect(String(buffer: response.body).contains("contoso"))
            }
            try await client.execute(uri: "/status.json", method: .head) { response in
                #expect(response.status == .ok)
                #expect(response.body.readableBytes == 0)
                #expect(Int(response.headers[.contentLength] ?? "") ?? 0 > 0, "GET's length")
            }
            try await client.execute(uri: "/nowhere", method: .get) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test("read-only: POST, PUT and DELETE are refused with 405 before any route")
    func readOnly() async throws {
        try await withRouter(token: nil) { client in
            for method in [HTTPRequest.Method.post, .put, .delete] {
                try await client.execute(uri: "/status.json", method: method) { response in
                    #expect(response.status == .methodNotAllowed, "\(method)")
                }
            }
        }
    }

    @Test("with a token: every path but /healthz needs it, the scheme in any case; a wrong one is 401")
    func bearerToken() async throws {
        let token = Self.token.value
        try await withRouter(token: Self.token) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/status.json", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(!String(buffer: response.body).contains(token))
            }
            try await client.execute(
                uri: "/status.json", method: .get, headers: [.authorization: "Bearer wrong-token"]
            ) { response in
                #expect(response.status == .unauthorized)
            }
            for scheme in ["Bearer", "bearer", "BEARER"] {
                try await client.execute(
                    uri: "/metrics", method: .get, headers: [.authorization: "\(scheme) \(token)"]
                ) { response in
                    #expect(response.status == .ok, "\(scheme)")
                }
            }
        }
    }
}
