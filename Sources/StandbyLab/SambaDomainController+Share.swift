import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension SambaDomainController {
    /// The share a controller started with `share:` serves.
    public static let shareName = "backups"

    /// The name SMB clients reach the controller's share by, with Kerberos: this machine's host
    /// name. libsmbclient tries no Kerberos for an IP address or `localhost`, and the ticket it
    /// asks for is `cifs/<the name in the URL>`, which `addShare` gives the controller's account.
    public static var smbHostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `smb://<host name>:PORT/backups/NAME`.
    public func shareURL(_ name: String) -> URL {
        URL(string: "smb://\(Self.smbHostName):\(smbPort)/\(Self.shareName)/\(name)")
            ?? URL(fileURLWithPath: "/nonexistent")
    }

    /// Adds the read-only share `backups` to the provisioned configuration, the principal
    /// `cifs/<host name>` to the controller's account, and, when the host name resolves to an
    /// address other than 127.0.0.1 (Debian's 127.0.1.1), that address to the interfaces the
    /// controller listens on. Before the controller starts.
    static func addShare(_ path: String, config: String, tool: String) throws {
        let host = smbHostName
        guard let address = resolveIPv4(host) else {
            throw LabError(
                .setupFailed, "this machine's host name \(host) does not resolve: SMB with Kerberos needs it")
        }
        guard address.hasPrefix("127.") || Ports.canBind(address: address, port: 0, type: Int32(SOCK_STREAM.rawValue))
        else {
            throw LabError(
                .setupFailed, "this machine's host name \(host) resolves to \(address), not an address of it")
        }
        var text = try String(contentsOfFile: config, encoding: .utf8)
        if address != "127.0.0.1" {
            text = text.replacingOccurrences(of: "interfaces = lo", with: "interfaces = lo \(address)")
        }
        text += """

            [\(shareName)]
            \tpath = \(path)
            \tread only = yes

            """
        try Data(text.utf8).write(to: URL(fileURLWithPath: config))
        try LabTool.check(tool, ["spn", "add", "cifs/\(host)", "\(hostName.uppercased())$", "-s", config])
        try openToTheDomain(path)
    }

    /// The domain's accounts map to uids of their own (idmap), so smbd reads the share as one of
    /// them: the share and every directory above it get o+x (a lab directory is 0700), the
    /// share o+rx. Files the tests write there are 0644.
    static func openToTheDomain(_ path: String) throws {
        var directory = (path as NSString).standardizingPath
        chmod(directory, 0o755)
        while directory != "/" {
            directory = (directory as NSString).deletingLastPathComponent
            var info = stat()
            guard stat(directory, &info) == 0 else { break }
            if info.st_mode & 0o001 == 0 { chmod(directory, (info.st_mode & 0o7777) | 0o001) }
        }
    }

    /// The first IPv4 address `host` resolves to (/etc/hosts, then DNS), dotted.
    static func resolveIPv4(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        guard let raw = first.pointee.ai_addr else { return nil }
        return raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
            var addr = address.pointee.sin_addr
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            guard inet_ntop(AF_INET, &addr, &text, socklen_t(text.count)) != nil else { return nil }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}
