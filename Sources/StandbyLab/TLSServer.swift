import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A lab certificate authority and the server certificates it issues, made with the `openssl`
/// command line. Certificates with any validity period — an expired one included — come from
/// `openssl ca -startdate -enddate`: OpenSSL 3.0's `req`/`x509` refuse a validity in the past.
public struct LabCertificateAuthority: Sendable {
    /// The CA certificate (PEM): the file a probe trusts.
    public let certificatePath: String
    let keyPath: String
    let directory: String

    /// What a server certificate should be like.
    public enum Kind: Sendable {
        /// Valid now for 365 days, for localhost, 127.0.0.1 and ::1.
        case valid
        /// Expired in 2020, for localhost, 127.0.0.1 and ::1.
        case expired
        /// Valid now, for wrong.example only.
        case wrongName
        /// Valid now, for localhost, 127.0.0.1 and ::1, and expiring in `days` days.
        case expiringIn(days: Int)
    }

    /// A certificate and its private key, both PEM files.
    public struct Issued: Sendable {
        public let certificatePath: String
        public let keyPath: String
    }

    /// Creates a CA in the `certificates` subdirectory of `lab`.
    public static func create(in lab: LabDirectory) throws -> LabCertificateAuthority {
        let directory = try lab.directory("certificates")
        let certificate = directory + "/ca.pem"
        let key = directory + "/ca.key"
        try OpenSSLTool.run(
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", certificate, "-subj", "/CN=Standby Lab CA", "-days", "3650",
            ], creates: certificate, log: directory + "/openssl.log")
        try Data("".utf8).write(to: URL(fileURLWithPath: directory + "/index.txt"))
        try Data("1000\n".utf8).write(to: URL(fileURLWithPath: directory + "/serial"))
        let config = """
            [ ca ]
            default_ca = lab
            [ lab ]
            database = \(directory)/index.txt
            serial = \(directory)/serial
            new_certs_dir = \(directory)
            default_md = sha256
            policy = anything
            copy_extensions = copy
            unique_subject = no
            x509_extensions = server
            [ server ]
            basicConstraints = CA:FALSE
            keyUsage = digitalSignature, keyEncipherment
            extendedKeyUsage = serverAuth
            [ anything ]
            commonName = supplied

            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: directory + "/ca.cnf"))
        return LabCertificateAuthority(certificatePath: certificate, keyPath: key, directory: directory)
    }

    /// Issues a server certificate named `name` (a file stem) of the given kind. `serverNames`
    /// adds DNS names to a valid certificate's localhost ones (a pool's name, for the client view).
    public func issue(_ name: String, kind: Kind = .valid, serverNames: [String] = []) throws -> Issued {
        let key = "\(directory)/\(name).key"
        let request = "\(directory)/\(name).csr"
        let certificate = "\(directory)/\(name).pem"
        let localNames =
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" + serverNames.map { ",DNS:\($0)" }.joined()
        let (subject, names): (String, String) =
            switch kind {
            case .wrongName: ("/CN=wrong.example", "subjectAltName=DNS:wrong.example")
            default: ("/CN=localhost", localNames)
            }
        let day: TimeInterval = 86_400
        let now = Date()
        let (start, end): (Date, Date) =
            switch kind {
            case .valid, .wrongName: (now - day, now + 365 * day)
            case .expired: (Date(timeIntervalSince1970: 1_577_836_800), Date(timeIntervalSince1970: 1_580_515_200))
            case .expiringIn(let days): (now - day, now + TimeInterval(days) * day)
            }
        let log = directory + "/openssl.log"
        try OpenSSLTool.run(
            [
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                "-out", request, "-subj", subject, "-addext", names,
            ], creates: request, log: log)
        try OpenSSLTool.run(
            [
                "ca", "-batch", "-config", directory + "/ca.cnf", "-cert", certificatePath, "-keyfile", keyPath,
                "-in", request, "-out", certificate, "-notext", "-startdate", Self.stamp(start), "-enddate",
                Self.stamp(end),
            ], creates: certificate, log: log)
        return Issued(certificatePath: certificate, keyPath: key)
    }

    /// YYYYMMDDHHMMSSZ, as `openssl ca` takes it.
    private static func stamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d%02d%02d%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}

/// Runs the `openssl` command line to completion.
enum OpenSSLTool {
    static func run(_ arguments: [String], creates output: String, log: String) throws {
        let openssl = try Programs.locate("openssl", package: "openssl")
        try? FileManager.default.removeItem(atPath: output)
        let process = try ServerProcess.spawn(name: "openssl", executable: openssl, arguments: arguments, logPath: log)
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                process.stop()
                throw LabError(.setupFailed, "openssl \(arguments[0]) did not finish within 30s")
            }
            usleep(5_000)
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: output),
            (attributes[.size] as? Int ?? 0) > 0
        else {
            throw LabError(
                .setupFailed,
                "openssl \(arguments.prefix(2).joined(separator: " ")) made no \(output): \(process.logTail())")
        }
    }
}

/// `openssl s_server -www` on a free loopback port with a lab certificate: the TLS peer of the
/// `tls` probe tests (valid, expired, wrong-name and soon-expiring certificates).
public final class TLSServer: Sendable {
    public let process: ServerProcess
    public let host: String
    public let port: UInt16
    /// The CA that issued the server's certificate: the file a probe trusts.
    public let caFile: String

    init(process: ServerProcess, host: String, port: UInt16, caFile: String) {
        self.process = process
        self.host = host
        self.port = port
        self.caFile = caFile
    }

    /// `host:port`.
    public var address: String { "\(host):\(port)" }

    /// Starts a server with a certificate of `kind` issued by `authority` (a new CA when nil).
    public static func start(
        in lab: LabDirectory, certificate kind: LabCertificateAuthority.Kind = .valid,
        authority: LabCertificateAuthority? = nil
    ) throws -> TLSServer {
        let host = "127.0.0.1"
        let openssl = try Programs.locate("openssl", package: "openssl")
        let authority = try authority ?? LabCertificateAuthority.create(in: lab)
        let name = "tls-\(UInt32.random(in: 0...UInt32.max))"
        let issued = try authority.issue(name, kind: kind)
        let port = try Ports.free(on: host)
        let accept = "\(host):\(port)"
        let process = try ServerProcess.spawn(
            name: "openssl s_server", executable: openssl,
            arguments: [
                "s_server", "-accept", accept, "-cert", issued.certificatePath, "-key", issued.keyPath, "-www",
            ],
            logPath: lab.file("\(name).log"))
        let server = TLSServer(process: process, host: host, port: port, caFile: authority.certificatePath)
        try Ports.waitForTCP(host, port, server: "openssl s_server")
        return server
    }

    public func stop() { process.stop() }
}
