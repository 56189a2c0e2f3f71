import CTLS
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A stream a probe talks over: a plain TCP socket or a TLS session on one.
protocol ProbeStream: AnyObject {
    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws
    /// nil when the deadline passed first; empty when the peer closed.
    func receive(maximum: Int, deadline: ContinuousClock.Instant) throws -> [UInt8]?
}

extension ProbeSocket: ProbeStream {}

/// A TLS client session over a connected `ProbeSocket`, through OpenSSL. OpenSSL is used directly
/// (not libcurl's CONNECT_ONLY) because the probes need a TLS byte stream for SIP over TLS as well
/// as the handshake, and the certificate's expiry, name and chain each checked and reported on
/// their own, even when the chain does not verify.
///
/// The handshake runs with verification recorded but not enforced (SSL_VERIFY_NONE), so a bad
/// certificate still completes the handshake and can be described; `problems(expectedName:)`
/// then says exactly what is wrong with it.
final class TLSSession: ProbeStream {
    private let context: TLSContext
    private let ssl: OpaquePointer
    private let socket: ProbeSocket

    init(socket: ProbeSocket, serverName: String, caFile: String?, deadline: ContinuousClock.Instant) throws {
        self.socket = socket
        context = try TLSContext.shared(caFile: caFile)
        guard let ssl = SSL_new(context.handle) else {
            throw ProbeFailure("TLS: cannot create a session: \(Self.lastError())")
        }
        self.ssl = ssl
        if !ProbeSocket.isNumeric(serverName) { _ = standby_ssl_set_sni(ssl, serverName) }
        SSL_set_fd(ssl, socket.fd)
        try drive("handshake with \(socket.peer)", deadline: deadline) { SSL_connect(ssl) }
    }

    deinit {
        SSL_free(ssl)
    }

    /// Runs one OpenSSL call until it completes, polling the socket for what it wants.
    @discardableResult
    private func drive(_ what: String, deadline: ContinuousClock.Instant, _ call: () -> Int32) throws -> Int32 {
        while true {
            ERR_clear_error()
            let result = call()
            if result > 0 { return result }
            let error = SSL_get_error(ssl, result)
            switch error {
            case SSL_ERROR_WANT_READ:
                guard try socket.wait(for: Int16(POLLIN), deadline: deadline) else {
                    throw ProbeFailure("TLS \(what): no answer within the timeout")
                }
            case SSL_ERROR_WANT_WRITE:
                guard try socket.wait(for: Int16(POLLOUT), deadline: deadline) else {
                    throw ProbeFailure("TLS \(what): timed out")
                }
            case SSL_ERROR_ZERO_RETURN:
                return 0
            case SSL_ERROR_SYSCALL where result == 0 || errno == 0:
                throw ProbeFailure("TLS \(what): the server closed the connection")
            case SSL_ERROR_SYSCALL:
                throw ProbeFailure("TLS \(what): \(String(cString: strerror(errno)))")
            default:
                throw ProbeFailure("TLS \(what): \(Self.lastError())")
            }
        }
    }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            let written = try bytes[offset...].withUnsafeBytes { raw in
                try drive("send to \(socket.peer)", deadline: deadline) {
                    SSL_write(ssl, raw.baseAddress, Int32(raw.count))
                }
            }
            guard written > 0 else {
                throw ProbeFailure("TLS send to \(socket.peer): the server closed the connection")
            }
            offset += Int(written)
        }
    }

    func receive(maximum: Int, deadline: ContinuousClock.Instant) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        do {
            let count = try buffer.withUnsafeMutableBytes { raw in
                try drive("receive from \(socket.peer)", deadline: deadline) {
                    SSL_read(ssl, raw.baseAddress, Int32(raw.count))
                }
            }
            return Array(buffer[0..<Int(count)])
        } catch let failure as ProbeFailure where failure.reason.hasSuffix("no answer within the timeout") {
            return nil
        } catch let failure as ProbeFailure where failure.reason.hasSuffix("closed the connection") {
            return []
        }
    }

    /// The certificate the server presented, if any.
    func certificate() -> CertificateInfo? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        return CertificateInfo(
            subject: Self.name(X509_get_subject_name(certificate)),
            issuer: Self.name(X509_get_issuer_name(certificate)),
            notBefore: Self.date(X509_get0_notBefore(certificate)),
            notAfter: Self.date(X509_get0_notAfter(certificate)))
    }

    /// What is wrong with the server's certificate for `expectedName`, each reason on its own;
    /// empty when nothing is.
    func problems(expectedName: String, verifyChain: Bool, now: Date = Date()) -> [String] {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return ["the server sent no certificate"] }
        defer { X509_free(certificate) }
        var problems: [String] = []
        let notBefore = Self.date(X509_get0_notBefore(certificate))
        let notAfter = Self.date(X509_get0_notAfter(certificate))
        if notAfter < now {
            problems.append("certificate expired on \(notAfter.formatted(.iso8601))")
        } else if notBefore > now {
            problems.append("certificate not valid before \(notBefore.formatted(.iso8601))")
        }
        let matches: Bool
        if ProbeSocket.isNumeric(expectedName) {
            matches = X509_check_ip_asc(certificate, expectedName, 0) == 1
        } else {
            matches = X509_check_host(certificate, expectedName, expectedName.utf8.count, 0, nil) == 1
        }
        if !matches {
            problems.append(
                "certificate name mismatch: \(expectedName) not in \(Self.name(X509_get_subject_name(certificate)))"
                    + " or its subject alternative names")
        }
        if verifyChain {
            let result = Int32(SSL_get_verify_result(ssl))
            // Expiry was reported above in words an operator reads faster.
            if result != X509_V_OK && result != X509_V_ERR_CERT_HAS_EXPIRED && result != X509_V_ERR_CERT_NOT_YET_VALID {
                problems.append(
                    "certificate not trusted: \(String(cString: X509_verify_cert_error_string(Int(result))))")
            }
        }
        return problems
    }

    private static func name(_ name: OpaquePointer?) -> String {
        guard let name, let text = standby_x509_name(name) else { return "?" }
        defer { free(text) }
        return String(cString: text)
    }

    private static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        var epoch: Int64 = 0
        guard let time, standby_asn1_time_epoch(time, &epoch) == 0 else { return Date(timeIntervalSince1970: 0) }
        return Date(timeIntervalSince1970: TimeInterval(epoch))
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "unknown OpenSSL error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(nulTerminated: buffer)
    }
}

/// A client SSL_CTX, one per CA file, made once and shared by every session. Loading the trust
/// store is the expensive part of a TLS probe (the system bundle is parsed whole, tens of
/// milliseconds, under OpenSSL's global locks), so doing it per attempt would serialise 200 probes.
/// OpenSSL allows any number of threads to create sessions from a context that is no longer being
/// configured, which is why this wrapper can be shared; nothing changes the context after `make`.
final class TLSContext: @unchecked Sendable {
    let handle: OpaquePointer

    private init(handle: OpaquePointer) { self.handle = handle }

    deinit { SSL_CTX_free(handle) }

    private static let cache = Mutex<[String: TLSContext]>([:])

    static func shared(caFile: String?) throws -> TLSContext {
        let key = caFile ?? ""
        return try cache.withLock { contexts in
            if let context = contexts[key] { return context }
            let context = try make(caFile: caFile)
            contexts[key] = context
            return context
        }
    }

    private static func make(caFile: String?) throws -> TLSContext {
        guard let handle = SSL_CTX_new(TLS_client_method()) else {
            throw ProbeFailure("TLS: cannot create a context: \(TLSSession.lastError())")
        }
        let context = TLSContext(handle: handle)
        _ = standby_ssl_ctx_min_tls12(handle)
        // Verification is recorded, not enforced, so a bad certificate can still be described.
        SSL_CTX_set_verify(handle, SSL_VERIFY_NONE, nil)
        SSL_CTX_set_default_verify_paths(handle)
        if let caFile, SSL_CTX_load_verify_locations(handle, caFile, nil) != 1 {
            throw ProbeFailure("TLS: cannot load CA file \(caFile): \(TLSSession.lastError())")
        }
        return context
    }
}
