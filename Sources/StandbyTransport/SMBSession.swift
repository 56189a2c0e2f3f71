import CSMBClient
import CSMBClientHooks
import Foundation
import Logging
import StandbyBase

#if canImport(Glibc)
    import Glibc
#endif

/// The process-wide side of libsmbclient. The library keeps global state: its configuration,
/// the dialect range a connection negotiates (`smbc_setOptionProtocols` sets it for the process,
/// not for the context, and the negotiation reads it at that moment), its debug state and its
/// talloc stack frames. Debian's build exports no `smbc_thread_posix`, so those frames are one
/// global stack, not one per thread: every libsmbclient call, on any context, runs under `lock`.
/// Sessions on several threads (a delta's range fetcher, parallel jobs) each have a context of
/// their own and take turns call by call; a call is one SMB request or a few (a read of
/// `SMBSession.readSize`), bounded by the context's timeout.
enum SMBLibrary {
    static let lock = NSLock()
    nonisolated(unsafe) private static var configured = false
    nonisolated(unsafe) private static var configPath: String?

    /// Runs `body` under the library's lock, having written once the configuration of our own
    /// (signing required, no NetBIOS, no state written outside a private directory).
    static func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        if !configured {
            configured = true
            configPath = writeConfiguration()
        }
        return try body()
    }

    /// The configuration libsmbclient loads after its default one. Only client settings.
    private static func writeConfiguration() -> String? {
        let directory = NSTemporaryDirectory() + "/standby-smbclient-\(getuid())-\(getpid())"
        mkdir(directory, 0o700)
        let config = """
            [global]
              client signing = required
              client ipc signing = required
              disable netbios = yes
              name resolve order = host
              smb ports = 445
              lock directory = \(directory)
              state directory = \(directory)
              cache directory = \(directory)
              private dir = \(directory)
              log level = 0

            """
        let path = directory + "/smb.conf"
        guard FileManager.default.createFile(atPath: path, contents: Data(config.utf8)) else { return nil }
        return path
    }

    /// Loads our configuration into a fresh context's library (the first `smbc_init_context`
    /// loads the default one, /etc/samba/smb.conf; ours is applied over it).
    static func applyConfiguration(_ context: UnsafeMutablePointer<SMBCCTX>) {
        if let configPath { _ = smbc_setConfiguration(context, configPath) }
    }
}

/// The credentials an SMB context's authentication callback hands to libsmbclient; reached
/// through the context's user-data pointer. The password is never logged or shown.
final class SMBLogin {
    var workgroup: String
    var user: String
    var password: String

    init(workgroup: String, user: String, password: String) {
        self.workgroup = workgroup
        self.user = user
        self.password = password
    }
}

/// One libsmbclient context: stat without a body, whole reads and ranged reads of smb:// URLs,
/// SMB2 and SMB3 only unless `SMBOptions.minProtocol` allows SMB1, signing required, encryption
/// as `SMBOptions.encryption` says, NTLMv2 or Kerberos. Connections are kept by the context
/// between calls (the ranges of a delta reuse one session).
///
/// Blocking and not `Sendable`: one thread uses a context; `TransferSession` owns one per
/// session, and a delta's range fetcher has its own session. Every call into the library goes
/// through `SMBLibrary.locked`.
final class SMBSession {
    let options: TransportOptions
    private let context: UnsafeMutablePointer<SMBCCTX>
    private let login: SMBLogin
    private let logger: Logger
    /// Reads are asked for in pieces this large: libsmbclient splits each into the server's
    /// maximum read size and keeps them in flight together.
    static let readSize = 8 << 20

    init(options: TransportOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let smb = options.smb
        var user = options.credentials?.user ?? ""
        var workgroup = "WORKGROUP"
        if let kerberos = smb.kerberos {
            user = kerberos.principal
        } else if let slash = user.firstIndex(where: { $0 == "\\" || $0 == "/" }) {
            // DOMAIN\user: the domain is the workgroup of the NTLMv2 login.
            workgroup = String(user[..<slash])
            user = String(user[user.index(after: slash)...])
        }
        let login = SMBLogin(
            workgroup: workgroup, user: user, password: smb.kerberos == nil ? options.credentials?.password ?? "" : "")
        self.login = login
        let made: UnsafeMutablePointer<SMBCCTX>? = SMBLibrary.locked {
            guard let context = smbc_new_context() else { return nil }
            // STANDBY_SMB_DEBUG=N: libsmbclient's own log at level N on standard error, to see
            // a negotiation fail. Samba logs no passwords at any level.
            // Otherwise its messages (level 0 and 1) go to the log at debug level: by default
            // the library prints them on standard output, where `--json` is.
            let debug = ProcessInfo.processInfo.environment["STANDBY_SMB_DEBUG"].flatMap { Int32($0) }
            smbc_setDebug(context, debug ?? 1)
            smbc_setOptionDebugToStderr(context, 1)
            if debug == nil { smbc_setLogCallback(context, nil, smbLogCallback) }
            standby_smb_set_message_sink(smbMessageSink)
            smbc_setTimeout(
                context, Int32(clamping: max(options.connectTimeout.milliseconds, options.lowSpeedTime.milliseconds)))
            smbc_setOptionUserData(context, Unmanaged.passUnretained(login).toOpaque())
            smbc_setFunctionAuthDataWithContext(context, smbAuthCallback)
            smbc_setOptionNoAutoAnonymousLogin(context, 1)
            smbc_setOptionFullTimeNames(context, 1)
            let level: smbc_smb_encrypt_level
            switch smb.encryption {
            case .required: level = SMBC_ENCRYPTLEVEL_REQUIRE
            case .desired: level = SMBC_ENCRYPTLEVEL_REQUEST
            case .off: level = SMBC_ENCRYPTLEVEL_NONE
            }
            smbc_setOptionSmbEncryptionLevel(context, level)
            smbc_setOptionUseKerberos(context, smb.kerberos == nil ? 0 : 1)
            smbc_setOptionFallbackAfterKerberos(context, 0)
            smbc_setOptionUseCCache(context, smb.kerberos == nil ? 0 : 1)
            guard smbc_init_context(context) != nil else {
                smbc_free_context(context, 1)
                return nil
            }
            SMBLibrary.applyConfiguration(context)
            return context
        }
        guard let made else {
            throw TransportError(
                .failed, url: "", host: "", message: "libsmbclient could not make a context (smbc_init_context failed)")
        }
        context = made
    }

    deinit {
        for entry in openFiles { close(entry.file) }
        let context = context
        SMBLibrary.locked { _ = smbc_free_context(context, 1) }
        withExtendedLifetime(login) {}
    }

    // MARK: - Operations

    /// Size and modification time from SMB's own file information: no byte of the body moves.
    func stat(_ url: URL) throws -> RemoteFileInfo {
        let target = try SMBTarget(url)
        var info = Glibc.stat()
        let (status, code) = try connecting(target) {
            (standby_smbc_stat(context, target.address, &info), standby_errno())
        }
        guard status == 0 else { throw failure(target, errno: code, doing: "stat") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw error(
                .notFound, target,
                "\(target.what) is a folder, not a file; end the URL with / to replicate every file under it")
        }
        return RemoteFileInfo(size: Int64(info.st_size), modificationTime: Int64(info.st_mtim.tv_sec))
    }

    /// Every regular file under the directory `url` (a share's folder), as paths relative to
    /// it, sorted; sub-folders are walked, `.` and `..` are not.
    func listFiles(_ url: URL) throws -> [String] {
        var result: [String] = []
        try walk(try SMBTarget(url, directory: true), prefix: "", into: &result, depth: 0)
        return result.sorted()
    }

    private func walk(_ target: SMBTarget, prefix: String, into result: inout [String], depth: Int) throws {
        guard depth < 32 else { return }
        let (opened, openErrno) = try connecting(target) {
            (standby_smbc_opendir(context, target.address), standby_errno())
        }
        guard let directory = opened else { throw failure(target, errno: openErrno, doing: "listing") }
        var entries: [(name: String, kind: Int32)] = []
        SMBLibrary.locked {
            var kind: Int32 = 0
            while let name = standby_smbc_readdir(context, directory, &kind) {
                entries.append((String(cString: name), kind))
            }
            _ = standby_smbc_closedir(context, directory)
        }
        for entry in entries where entry.name != "." && entry.name != ".." {
            let relative = prefix + entry.name
            switch entry.kind {
            case 1: result.append(relative)
            case 2:
                let child = try SMBTarget(
                    target.url.appendingPathComponent(entry.name, isDirectory: true), directory: true)
                try walk(child, prefix: relative + "/", into: &result, depth: depth + 1)
            default: break
            }
        }
    }

    /// Streams the file (or `range` of it) to `sink`. The file's size at the open bounds a whole
    /// read: fewer bytes than that, or than the range, is `truncated`. Cancellation is checked
    /// between reads; each read has the context's timeout.
    func get(
        _ url: URL, range: ByteRange?, cancellation: CancellationFlag?, progress: ((TransferProgress) -> Void)?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Int64 {
        let target = try SMBTarget(url)
        if let range, range.length <= 0 { return 0 }
        // A whole read opens the file afresh (its size is the one at this open) and closes it;
        // a range reuses a file this session keeps open, so each range costs one read request.
        let file = try range == nil ? open(target) : kept(target)
        var failed = true
        defer {
            if range == nil {
                close(file)
            } else if failed {
                forget(file)
            }
        }
        let start = range?.offset ?? 0
        let wanted: Int64
        if let range {
            wanted = range.length
        } else {
            let (size, statErrno) = fileSize(file)
            guard let size else { throw failure(target, errno: statErrno, doing: "stat") }
            wanted = max(0, size - start)
        }
        if let seekErrno = seek(file, to: start) {
            throw failure(target, errno: seekErrno, doing: "seek")
        }
        let rate = options.maxReceiveRate.flatMap { $0 > 0 ? $0 : nil }
        // Under a rate cap, smaller reads: pacing works in whole reads.
        let piece = Int(
            min(wanted, rate.map { max(64 << 10, min(Int64(Self.readSize), $0 / 4)) } ?? Int64(Self.readSize)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, piece), alignment: 64)
        defer { buffer.deallocate() }
        let began = ContinuousClock.now
        var delivered: Int64 = 0
        while delivered < wanted {
            if cancellation?.isCancelled == true {
                throw error(.cancelled, target, "the transfer was cancelled")
            }
            let count = Int(min(Int64(piece), wanted - delivered))
            let (n, code) = read(file, into: buffer.baseAddress, count: count)
            if n < 0 {
                throw error(
                    code == ETIMEDOUT ? .timeout : .truncated, target,
                    "the read of \(target.what) failed after \(delivered) of \(wanted) bytes at offset \(start): \(Self.describe(code)); the server or the share went away, or the file was cut"
                )
            }
            if n == 0 { break }
            try sink(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            delivered += Int64(n)
            progress?(TransferProgress(received: delivered, expected: wanted, sent: 0))
            if let rate {
                let due = Duration.milliseconds(delivered * 1000 / rate)
                let spent = ContinuousClock.now - began
                if due > spent { Thread.sleep(forTimeInterval: (due - spent).seconds) }
            }
        }
        if delivered < wanted {
            throw error(
                .truncated, target,
                "\(target.what) ended after \(delivered) of the \(wanted) bytes asked for at offset \(start) (the file is shorter than when it was opened, or than the range)"
            )
        }
        failed = false
        return delivered
    }

    // MARK: - Open files

    /// Files kept open for ranged reads, most recent last: a delta reads hundreds of ranges of
    /// one file and of its index, in turns.
    private var openFiles: [(address: String, file: OpaquePointer)] = []
    static let openLimit = 4

    private func open(_ target: SMBTarget) throws -> OpaquePointer {
        let (opened, openErrno) = try connecting(target) {
            (standby_smbc_open(context, target.address), standby_errno())
        }
        guard let file = opened else { throw failure(target, errno: openErrno, doing: "open") }
        return file
    }

    private func kept(_ target: SMBTarget) throws -> OpaquePointer {
        if let index = openFiles.firstIndex(where: { $0.address == target.address }) {
            let entry = openFiles.remove(at: index)
            openFiles.append(entry)
            return entry.file
        }
        let file = try open(target)
        openFiles.append((target.address, file))
        if openFiles.count > Self.openLimit { close(openFiles.removeFirst().file) }
        return file
    }

    /// Closes a kept file whose read failed: the next range opens it again.
    private func forget(_ file: OpaquePointer) {
        openFiles.removeAll { $0.file == file }
        close(file)
    }

    // MARK: - Calls on an open file, each under the library's lock

    private func fileSize(_ file: OpaquePointer) -> (Int64?, Int32) {
        SMBLibrary.locked {
            var info = Glibc.stat()
            let status = standby_smbc_fstat(context, file, &info)
            return (status == 0 ? Int64(info.st_size) : nil, standby_errno())
        }
    }

    /// nil, or the errno of a seek that failed.
    private func seek(_ file: OpaquePointer, to offset: Int64) -> Int32? {
        SMBLibrary.locked { standby_smbc_lseek(context, file, off_t(offset)) < 0 ? standby_errno() : nil }
    }

    private func read(_ file: OpaquePointer, into buffer: UnsafeMutableRawPointer?, count: Int) -> (Int, Int32) {
        SMBLibrary.locked { (standby_smbc_read(context, file, buffer, count), standby_errno()) }
    }

    private func close(_ file: OpaquePointer) {
        SMBLibrary.locked { _ = standby_smbc_close(context, file) }
    }

    // MARK: - Connecting and errors

    /// Runs a call that may connect under the library's lock, with this context's dialect range
    /// in the library's globals (see `SMBLibrary`) and its Kerberos tickets in the default cache.
    ///
    /// A connection libsmbclient could not encrypt (it says so, and goes on without) is refused
    /// where encryption is required, and the context is not used again: it keeps that
    /// connection for the next call.
    private func connecting<T>(_ target: SMBTarget, _ body: () -> T) throws -> T {
        if let unencrypted { throw unencrypted }
        if let kerberos = options.smb.kerberos {
            try KerberosTicketCache.prepare(kerberos, host: target.host, url: target.shown)
        }
        let (result, refused) = SMBLibrary.locked {
            _ = smbc_setOptionProtocols(context, Self.lowestDialect(options.smb).rawValue, "SMB3")
            _ = standby_smb_take_encryption_refused()
            standby_set_errno(0)
            let result = body()
            return (result, standby_smb_take_encryption_refused() != 0)
        }
        if refused && options.smb.encryption == .required {
            let refusal = error(
                .tls, target,
                "the server cannot encrypt the session, which smb.encrypt: required demands; enable SMB3 encryption on the server (Windows: Set-SmbServerConfiguration -EncryptData $true; Samba: server smb encrypt = required), or set smb.encrypt: desired for this source"
            )
            unencrypted = refusal
            throw refusal
        }
        return result
    }

    /// Set once a connection of this context turned out unencrypted where encryption is required.
    private var unencrypted: TransportError?

    /// The lowest dialect a context negotiates. Encryption exists from SMB 3.0 on, and
    /// libsmbclient 4.17 goes on unencrypted when the server cannot encrypt even though
    /// encryption is required ("Encryption required and server doesn't support SMB3 encryption -
    /// failing connect", then the tree connect succeeds): with `required`, nothing below SMB3 is
    /// negotiated at all.
    static func lowestDialect(_ smb: SMBOptions) -> SMBOptions.Dialect {
        smb.encryption == .required ? max(smb.minProtocol, .smb3_00) : smb.minProtocol
    }

    /// The error for a failed stat or open, in words that name the host, the share and the file.
    /// A failure that is not about the login, the file or the network is a negotiation that
    /// failed: where SMB1 is not allowed, a second negotiation that allows only SMB1 tells
    /// whether the server speaks nothing else, and the error then says how to allow it.
    private func failure(_ target: SMBTarget, errno code: Int32, doing: String) -> TransportError {
        let encryption = options.smb.encryption
        switch code {
        case ENOENT, ENOTDIR:
            return error(.notFound, target, "no such file or share: \(target.what) (\(Self.describe(code)))")
        case EPERM:
            if options.smb.kerberos != nil {
                return error(
                    .loginDenied, target,
                    "the server refused the Kerberos login of \(login.user) (\(Self.describe(code))); check the keytab or ticket cache, and that the URL names the server by the name its cifs/ principal has"
                )
            }
            return error(
                .loginDenied, target,
                "the server refused the login of \(login.user.isEmpty ? "(no user)" : login.user) (\(Self.describe(code))); check STANDBY_SOURCE_USER and STANDBY_SOURCE_PASSWORD"
            )
        case EACCES:
            if encryption == .required {
                return error(
                    .loginDenied, target,
                    "access to \(target.what) denied (\(Self.describe(code))): the account has no rights on it, or the server cannot encrypt the session, which smb.encrypt: required demands"
                )
            }
            return error(
                .loginDenied, target,
                "access to \(target.what) denied: the account has no rights on the share or the file (\(Self.describe(code)))"
            )
        case ECONNREFUSED:
            return error(
                .connectionRefused, target,
                "connection refused (nothing listening on port \(target.port.map(String.init) ?? "445"))")
        case EHOSTUNREACH, ENETUNREACH, EHOSTDOWN:
            return error(.unreachableHost, target, "the host cannot be reached (\(Self.describe(code)))")
        case ETIMEDOUT:
            return error(.timeout, target, "the server did not answer in time (\(Self.describe(code)))")
        case EISDIR:
            return error(.notFound, target, "\(target.what) is a directory, not a file")
        default:
            break
        }
        // Not the login, the file or the network: the negotiation. Ask the server again with
        // older dialects to say which it speaks.
        if Self.lowestDialect(options.smb) > .smb2_10,
            Self.negotiates(target, options: options, from: .smb2_02, to: "SMB2_10")
        {
            return error(
                .tls, target,
                "the server speaks SMB 2 but not SMB 3, so it cannot encrypt the session, which smb.encrypt: required demands; enable SMB3 on the server, or set smb.encrypt: desired for this source"
            )
        }
        if !options.smb.allowsSMB1, Self.negotiates(target, options: options, from: .nt1, to: "NT1") {
            return error(
                .tls, target,
                "the server speaks only SMB1, which Standby refuses: SMB1 has no encryption and weak signing, and Windows Server 2019 and later turn it off. Enable SMB2/3 on the server, or allow SMB1 for this source with smb.min_protocol: NT1 (on the backup set, or in the deployment's smb section)"
            )
        }
        return error(
            .failed, target,
            "the SMB \(doing) of \(target.what) failed: \(Self.describe(code)) (minimum dialect \(options.smb.minProtocol.rawValue), encryption \(encryption.rawValue), signing required)"
        )
    }

    /// Whether a negotiation of the dialects `from` to `to`, unencrypted, gets as far as the
    /// login or the file: then the failure with the dialects asked for was the dialect.
    private static func negotiates(
        _ target: SMBTarget, options: TransportOptions, from: SMBOptions.Dialect, to: String
    ) -> Bool {
        var probeOptions = options
        probeOptions.smb.minProtocol = from
        probeOptions.smb.encryption = .off
        probeOptions.smb.kerberos = nil
        guard let probe = try? SMBSession(options: probeOptions, logger: Logger(label: "standby.smb.probe")) else {
            return false
        }
        var info = Glibc.stat()
        let (status, code) = SMBLibrary.locked {
            _ = smbc_setOptionProtocols(probe.context, from.rawValue, to)
            standby_set_errno(0)
            return (standby_smbc_stat(probe.context, target.address, &info), standby_errno())
        }
        return status == 0 || [EPERM, EACCES, ENOENT, ENOTDIR, EISDIR].contains(code)
    }

    private func error(_ code: TransportError.Code, _ target: SMBTarget, _ message: String) -> TransportError {
        let secrets = [login.password, options.credentials?.password ?? ""]
        return TransportError(
            code, url: target.shown, host: target.host, message: Redaction.scrub(message, secrets: secrets))
    }

    static func describe(_ code: Int32) -> String {
        code == 0 ? "no error code" : String(cString: strerror(code))
    }
}

/// An smb:// URL taken apart: the host, the port, the share and the path, and the address
/// libsmbclient is given (no user or password in it: those go through the callback).
struct SMBTarget {
    var host: String
    var port: Int?
    var share: String
    var path: String
    /// `smb://host:port/share/path`, percent-encoded as the URL was.
    var address: String
    /// The URL as shown in messages (no password).
    var shown: String
    let url: URL

    /// `directory`: the URL names a folder (a share's root is one too).
    init(_ url: URL, directory: Bool = false) throws {
        self.url = url
        shown = Redaction.redacted(url)
        guard let host = url.host, !host.isEmpty else {
            throw TransportError(.badURL, url: shown, host: "", message: "an smb:// URL needs a host")
        }
        self.host = host
        port = url.port
        let components = url.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard components.count >= (directory ? 1 : 2) else {
            throw TransportError(
                .badURL, url: shown, host: host,
                message: "an smb:// URL names a share and a file in it: smb://host[:port]/share/path")
        }
        share = components[0]
        path = components.dropFirst().joined(separator: "/")
        var parts = URLComponents()
        parts.scheme = "smb"
        parts.host = host
        parts.port = url.port
        parts.percentEncodedPath =
            URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? url.path
        address = parts.string ?? "smb://\(host)/\(share)/\(path)"
    }

    /// `rtc.bak on share backups` for messages.
    var what: String { path.isEmpty ? "share \(share)" : "\(path) on share \(share)" }
}

/// Where libsmbclient's own messages go (the callback is the library's, for the process).
private let smbLibraryLogger = Logger(label: "standby.smb.library")

private let smbLogCallback: smbc_debug_callback_fn = { _, level, message in
    guard let message else { return }
    let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !text.isEmpty else { return }
    smbLibraryLogger.debug("libsmbclient", metadata: ["level": "\(level)", "message": "\(text)"])
}

/// libsmbclient's printed messages (its d_printf), taken off standard output by CSMBClientHooks.
private let smbMessageSink: @convention(c) (UnsafePointer<CChar>?) -> Void = { message in
    guard let message else { return }
    let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !text.isEmpty else { return }
    smbLibraryLogger.debug("libsmbclient", metadata: ["message": "\(text)"])
}

/// libsmbclient asks for the login of each new connection here; the context's user data is its
/// `SMBLogin`.
private let smbAuthCallback: smbc_get_auth_data_with_context_fn = {
    context, _, _, workgroup, workgroupLength, user, userLength, password, passwordLength in
    guard let context, let raw = smbc_getOptionUserData(context) else { return }
    let login = Unmanaged<SMBLogin>.fromOpaque(raw).takeUnretainedValue()
    func copy(_ text: String, into buffer: UnsafeMutablePointer<CChar>?, length: Int32) {
        guard let buffer, length > 0 else { return }
        let bytes = Array(text.utf8.prefix(Int(length) - 1))
        for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
    }
    copy(login.workgroup, into: workgroup, length: workgroupLength)
    copy(login.user, into: user, length: userLength)
    copy(login.password, into: password, length: passwordLength)
}
