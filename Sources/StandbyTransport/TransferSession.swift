import CCurl
import Foundation
import Logging
import StandbyBase
import Synchronization

/// libcurl's global state, initialised once per process before the first handle.
enum CurlGlobal {
    static let ready: Bool = standby_curl_global_init_all() == CURLE_OK
}

/// One libcurl easy handle (and, for smb://, one libsmbclient context), reused for every
/// transfer it makes so that connections (HTTP keep-alive, one SSH session, one SMB session)
/// are reused between the byte ranges of a delta transfer.
///
/// Every call blocks the calling thread: use it from a dedicated thread (`Blocking.run`),
/// never from a task on the cooperative pool. It is not `Sendable`: one thread at a time.
public final class TransferSession {
    public let options: TransportOptions
    public private(set) var stats = TransferStats()
    /// Checked during transfers; cancelling it aborts the current transfer with `cancelled`.
    public var cancellation: CancellationFlag?
    /// Called during transfers with the progress of the current one (about once a second, and
    /// whenever data arrives).
    public var progress: ((TransferProgress) -> Void)?

    /// ~/.ssh/known_hosts if it exists, looked up once: a delta transfer prepares a request
    /// for every byte range.
    private lazy var standardKnownHosts: String? = {
        guard let home = ProcessInfo.processInfo.environment["HOME"] else { return nil }
        let standard = home + "/.ssh/known_hosts"
        return FileManager.default.fileExists(atPath: standard) ? standard : nil
    }()
    /// The HTTP authentication methods each origin (scheme://host:port) offered in a 401.
    private var authAsked: [String: Int] = [:]
    private let handle: UnsafeMutableRawPointer
    /// smb:// goes through libsmbclient: SMB2 and SMB3, byte ranges, signing, encryption.
    private var smb: SMBSession?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private let logger: Logger

    public init(options: TransportOptions = TransportOptions(), logger: Logger) throws {
        guard CurlGlobal.ready, let handle = curl_easy_init() else {
            throw TransportError(
                .failed, url: "", host: "", message: "libcurl could not be initialised (curl_easy_init failed)")
        }
        self.handle = handle
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        self.options = options
        self.logger = logger
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    // MARK: - Operations

    /// Whether `url` is read through libsmbclient rather than libcurl.
    static func isSMB(_ url: URL) -> Bool { url.scheme?.lowercased() == "smb" }

    /// The SMB context of this session, made at its first smb:// call.
    private func smbSession() throws -> SMBSession {
        if let smb { return smb }
        let made = try SMBSession(options: options, logger: logger)
        smb = made
        return made
    }

    /// The regular files under the folder `url` (smb:// only; file:// folders are walked by the
    /// replicator itself), as paths relative to it.
    public func listFiles(under url: URL) throws -> [String] {
        guard Self.isSMB(url) else {
            throw error(.badURL, url, "only an smb:// folder can be listed here")
        }
        let names = try smbSession().listFiles(url)
        stats.requests += 1
        return names
    }

    /// Size and modification time of `url` without reading its body (HTTP HEAD; a stat for
    /// file://, sftp:// and ftp://; SMB's own file information for smb://).
    public func stat(_ url: URL) throws -> RemoteFileInfo {
        if Self.isSMB(url) {
            let info = try smbSession().stat(url)
            stats.requests += 1
            return info
        }
        let state = CallbackState(url: url)
        try prepare(url, state: state)
        set(CURLOPT_NOBODY, 1)
        set(CURLOPT_FILETIME, 1)
        set(CURLOPT_FAILONERROR, 1)
        try perform(url, state: state)
        var length: curl_off_t = -1
        var filetime: curl_off_t = -1
        _ = standby_curl_getinfo_off(handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
        _ = standby_curl_getinfo_off(handle, CURLINFO_FILETIME_T, &filetime)
        return RemoteFileInfo(
            size: length >= 0 ? Int64(length) : nil, modificationTime: filetime >= 0 ? Int64(filetime) : nil)
    }

    /// Streams the body of `url` (or of `range` of it) to `sink` as it arrives, without
    /// keeping it in memory. Returns the bytes delivered. A range answered with the whole file
    /// (a server that ignores Range) is cut to the range here; a body shorter than announced or
    /// than the range is a `truncated` error. An error thrown by `sink` stops the transfer and
    /// is rethrown as is.
    @discardableResult
    public func get(
        _ url: URL, range: ByteRange? = nil, sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> Int64 {
        if Self.isSMB(url) {
            let smb = try smbSession()
            var delivered: Int64 = 0
            defer {
                stats.bodyBytes += delivered
                stats.requests += 1
            }
            return try smb.get(url, range: range, cancellation: cancellation, progress: progress) { bytes in
                try sink(bytes)
                delivered += Int64(bytes.count)
            }
        }
        return try withoutActuallyEscaping(sink) { sink in
            let state = CallbackState(url: url)
            state.sink = sink
            state.range = range
            try prepare(url, state: state)
            set(CURLOPT_FAILONERROR, 1)
            // Bigger reads for bulk transfers: fewer callbacks and syscalls per GiB. Not with a
            // rate cap: libcurl paces by whole buffers and a big one defeats the cap.
            if options.maxReceiveRate == nil { set(CURLOPT_BUFFERSIZE, 512 << 10) }
            if let range {
                guard range.length > 0 else { return 0 }
                set(CURLOPT_RANGE, "\(range.offset)-\(range.end - 1)")
            }
            try perform(url, state: state)
            let delivered = state.delivered
            if let range, delivered < range.length {
                throw error(
                    .truncated, url,
                    "the source ended after \(delivered) of the \(range.length) bytes asked for at offset \(range.offset)"
                )
            }
            if range == nil {
                var length: curl_off_t = -1
                _ = standby_curl_getinfo_off(handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length)
                if length >= 0 && delivered < Int64(length) {
                    throw error(.truncated, url, "the source ended after \(delivered) of \(length) bytes")
                }
            }
            return delivered
        }
    }

    /// The first `length` bytes of `url` and the size of the whole, in one request over HTTP
    /// (the size from the answer's Content-Range, or its length when the server sent it all),
    /// a stat and a read elsewhere. A round trip less than `stat` then `fetch` across a WAN.
    public func fetchStart(_ url: URL, length: Int) throws -> (bytes: Data, size: Int64?) {
        let scheme = url.scheme?.lowercased() ?? ""
        guard scheme == "http" || scheme == "https" else {
            let size = try stat(url).size
            let take = max(0, min(Int64(length), size ?? Int64(length)))
            guard take > 0 else { return (Data(), size) }
            return (try fetch(url, range: ByteRange(offset: 0, length: take), maxBytes: length), size)
        }
        let state = CallbackState(url: url)
        state.collectHeaders = true
        state.collectBody = true
        state.maxBody = length
        state.range = ByteRange(offset: 0, length: Int64(length))
        try prepare(url, state: state)
        set(CURLOPT_FAILONERROR, 1)
        set(CURLOPT_RANGE, "0-\(length - 1)")
        try perform(url, state: state)
        var size: Int64?
        if state.status == 206, let range = state.header(named: "Content-Range"),
            let total = range.split(separator: "/").last.flatMap({ Int64($0.trimmingCharacters(in: .whitespaces)) })
        {
            size = total
        } else if state.status == 200, let text = state.header(named: "Content-Length") {
            size = Int64(text)
        }
        return (state.body, size)
    }

    /// Origins that answered a request for several ranges with the whole file or an error:
    /// asked one range a request from then on, by every session of the process (each such
    /// answer costs a connection and a buffer of the unwanted body).
    private static let singleRangeOrigins = Mutex<Set<String>>([])

    /// Streams several byte ranges of `url` to `sink` (the index of the range in `ranges`, its
    /// next bytes), each range's bytes in order and the ranges one after another. Over HTTP
    /// they travel in one request (`Range: a-b,c-d,...`) where the server serves that; a server
    /// that answers with the whole file, refuses, or leaves ranges out is asked for what is
    /// missing one range a request, and for that origin from then on. Other schemes read the
    /// ranges one after another on the session's connection. `ranges` must be sorted, apart and
    /// not empty.
    public func get(
        _ url: URL, ranges: [ByteRange], sink: (Int, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let scheme = url.scheme?.lowercased() ?? ""
        var rest = Array(ranges.enumerated())
        let origin = Self.origin(url)
        if ranges.count > 1, scheme == "http" || scheme == "https",
            !Self.singleRangeOrigins.withLock({ $0.contains(origin) })
        {
            let left = try withoutActuallyEscaping(sink) { sink in try getMultiple(url, ranges, sink: sink) }
            rest = rest.compactMap { item in left[item.offset].map { (item.offset, $0) } }
        }
        for (index, range) in rest where range.length > 0 {
            try get(url, range: range) { try sink(index, $0) }
        }
    }

    /// One request for several ranges. Returns what it did not deliver, by index (the rest of
    /// a range cut short, ranges left out): all of them when the server would not serve several.
    private func getMultiple(
        _ url: URL, _ ranges: [ByteRange], sink: @escaping (Int, UnsafeRawBufferPointer) throws -> Void
    ) throws -> [Int: ByteRange] {
        let state = CallbackState(url: url)
        state.multiRanges = ranges
        state.rangesSink = sink
        state.collectHeaders = true
        try prepare(url, state: state)
        set(CURLOPT_FAILONERROR, 1)
        if options.maxReceiveRate == nil { set(CURLOPT_BUFFERSIZE, 512 << 10) }
        set(CURLOPT_RANGE, ranges.map(\.description).joined(separator: ","))
        var all: [Int: ByteRange] = [:]
        for (index, range) in ranges.enumerated() { all[index] = range }
        do {
            try perform(url, state: state)
        } catch let error as TransportError
            where state.delivered == 0 && [400, 413, 416, 431, 501].contains(error.httpStatus ?? 0)
        {
            // A server that refuses several ranges (or a Range header this long) may still
            // serve them one by one.
            logger.info(
                "The server refused a request for several ranges; asking one range a request",
                metadata: ["url": "\(Redaction.redacted(url))", "status": "\(error.httpStatus ?? 0)"])
            Self.singleRangeOrigins.withLock { _ = $0.insert(Self.origin(url)) }
            return all
        } catch let error as ByteRangesBody.Malformed {
            throw self.error(.failed, url, "the answer to a request for several ranges is malformed: \(error)")
        }
        if state.rangesIgnored {
            logger.info(
                "The server answered a request for several ranges with the whole file; asking one range a request",
                metadata: ["url": "\(Redaction.redacted(url))"])
            Self.singleRangeOrigins.withLock { _ = $0.insert(Self.origin(url)) }
            return all
        }
        guard let body = state.rangesBody else { return all }
        let first = body.current
        var left: [Int: ByteRange] = [:]
        for (k, range) in body.remaining.enumerated() { left[first + k] = range }
        if !left.isEmpty {
            logger.debug(
                "The server left ranges out of a multi-range answer; asking for them one by one",
                metadata: ["url": "\(Redaction.redacted(url))", "missing": "\(left.count)"])
        }
        return left
    }

    /// Reads a small body (an index, a manifest) into memory; more than `maxBytes` is `tooLarge`.
    public func fetch(_ url: URL, range: ByteRange? = nil, maxBytes: Int) throws -> Data {
        var data = Data()
        try get(url, range: range) { chunk in
            guard data.count + chunk.count <= maxBytes else {
                throw self.error(.tooLarge, url, "the body is larger than \(maxBytes) bytes")
            }
            data.append(contentsOf: chunk)
        }
        return data
    }

    /// One HTTP request: any method, headers, an optional body. Any HTTP status is an answer,
    /// not an error; connection failures and timeouts are errors.
    public func request(_ request: HTTPRequest) throws -> HTTPResponse {
        let url = request.url
        if Self.isSMB(url) { throw error(.badURL, url, "an HTTP request cannot go to an smb:// URL") }
        let state = CallbackState(url: url)
        state.collectBody = true
        state.collectHeaders = true
        state.maxBody = request.maxResponseBytes
        try prepare(url, state: state)
        set(CURLOPT_TIMEOUT_MS, Int(request.timeout.milliseconds))
        if request.followRedirects {
            set(CURLOPT_FOLLOWLOCATION, 1)
            set(CURLOPT_MAXREDIRS, 5)
        }
        let method = request.method.uppercased()
        if method == "HEAD" {
            set(CURLOPT_NOBODY, 1)
        } else if method != "GET" || request.body != nil {
            set(CURLOPT_CUSTOMREQUEST, method)
        }
        if let body = request.body {
            set(CURLOPT_POSTFIELDSIZE_LARGE, Int64(body.count))
            if body.isEmpty {
                set(CURLOPT_COPYPOSTFIELDS, "")
            } else {
                body.withUnsafeBytes { raw in
                    // COPYPOSTFIELDS copies POSTFIELDSIZE bytes now: the body may hold NULs.
                    _ = standby_curl_setopt_ptr(
                        handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress))
                }
            }
        }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        for header in request.headers {
            list = curl_slist_append(list, "\(header.name): \(header.value)")
        }
        if let body = request.body, !body.isEmpty,
            !request.headers.contains(where: { $0.name.lowercased() == "expect" })
        {
            // No "Expect: 100-continue" round trip for small webhook bodies.
            list = curl_slist_append(list, "Expect:")
        }
        defer { curl_slist_free_all(list) }
        if list != nil { _ = standby_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list) }
        if options.tls.collectCertificates { set(CURLOPT_CERTINFO, 1) }

        try perform(url, state: state)
        var status = 0
        _ = standby_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(
            status: status, headers: state.headers, body: state.body, timings: timings(),
            certificates: options.tls.collectCertificates ? certificates() : [])
    }

    // MARK: - Setup

    private func set(_ option: CURLoption, _ value: Int) {
        _ = standby_curl_setopt_long(handle, option, value)
    }

    private func set(_ option: CURLoption, _ value: Int64) {
        _ = standby_curl_setopt_off(handle, option, curl_off_t(value))
    }

    private func set(_ option: CURLoption, _ value: String) {
        _ = standby_curl_setopt_str(handle, option, value)
    }

    /// Resets the handle (keeping its connections and caches) and sets what every transfer has:
    /// timeouts, protocols, credentials, callbacks.
    private func prepare(_ url: URL, state: CallbackState) throws {
        curl_easy_reset(handle)
        errorBuffer[0] = 0
        _ = standby_curl_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        set(CURLOPT_URL, url.absoluteString)
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_PROTOCOLS_STR, "file,http,https,sftp,scp,ftp,ftps")
        set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        set(CURLOPT_CONNECTTIMEOUT_MS, Int(options.connectTimeout.milliseconds))
        set(CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimit)
        set(CURLOPT_LOW_SPEED_TIME, max(1, Int(options.lowSpeedTime.seconds.rounded(.up))))
        if let total = options.totalTimeout { set(CURLOPT_TIMEOUT_MS, Int(total.milliseconds)) }
        if let rate = options.maxReceiveRate, rate > 0 { set(CURLOPT_MAX_RECV_SPEED_LARGE, rate) }
        set(CURLOPT_USERAGENT, options.userAgent)
        set(CURLOPT_TCP_KEEPALIVE, 1)

        // Credentials go only where they are asked for. Over HTTP, with more than one method
        // allowed, libcurl sends the request without them and answers the server's 401 with the
        // method it offers; an origin that asked for Basic gets it at once from then on (as a
        // browser does), so a delta's ranges cost no second round trip each. Over plain http
        // they would cross the network in clear: none are sent unless the set allows it.
        let scheme = url.scheme?.lowercased() ?? ""
        let http = scheme == "http" || scheme == "https"
        let mayAuthenticate = !http || scheme == "https" || options.allowInsecureAuth
        if mayAuthenticate {
            // A user named in the URL (sftp://backup@host/...) stands: the configured credentials
            // are for the sources that name none, or that name the same user.
            let urlUser = url.user.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding ?? $0 }
            if let credentials = options.credentials, urlUser == nil || urlUser == credentials.user {
                set(CURLOPT_USERNAME, credentials.user)
                set(CURLOPT_PASSWORD, credentials.password)
            } else if options.useNetrc {
                set(CURLOPT_NETRC, standby_curl_netrc_optional())
            }
            if http {
                let basicAsked = authAsked[Self.origin(url)] == standby_curl_http_auth_basic()
                set(CURLOPT_HTTPAUTH, basicAsked ? standby_curl_http_auth_basic() : standby_curl_http_auth_any())
            }
        }

        let ssh = options.ssh
        set(CURLOPT_SSH_AUTH_TYPES, standby_curl_ssh_auth_any())
        if let key = ssh.privateKeyFile { set(CURLOPT_SSH_PRIVATE_KEYFILE, key) }
        if let key = ssh.publicKeyFile { set(CURLOPT_SSH_PUBLIC_KEYFILE, key) }
        if let passphrase = ssh.keyPassphrase { set(CURLOPT_KEYPASSWD, passphrase) }
        if let fingerprint = ssh.hostKeySHA256 {
            let bare = fingerprint.hasPrefix("SHA256:") ? String(fingerprint.dropFirst(7)) : fingerprint
            set(CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, bare)
        }
        if let knownHosts = ssh.knownHostsFile {
            set(CURLOPT_SSH_KNOWNHOSTS, knownHosts)
        } else if ssh.hostKeySHA256 == nil, let standard = standardKnownHosts {
            set(CURLOPT_SSH_KNOWNHOSTS, standard)
        }

        let tls = options.tls
        if let ca = tls.caFile { set(CURLOPT_CAINFO, ca) }
        set(CURLOPT_SSL_VERIFYPEER, tls.verifyPeer ? 1 : 0)
        set(CURLOPT_SSL_VERIFYHOST, tls.verifyHost ? 2 : 0)
        if let cert = tls.clientCertificateFile { set(CURLOPT_SSLCERT, cert) }
        if let key = tls.clientKeyFile { set(CURLOPT_SSLKEY, key) }

        state.cancellation = cancellation
        state.progress = progress
        let context = Unmanaged.passUnretained(state).toOpaque()
        _ = standby_curl_setopt_write(handle, writeCallback)
        _ = standby_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, context)
        _ = standby_curl_setopt_header(handle, headerCallback)
        _ = standby_curl_setopt_ptr(handle, CURLOPT_HEADERDATA, context)
        _ = standby_curl_setopt_xferinfo(handle, progressCallback)
        _ = standby_curl_setopt_ptr(handle, CURLOPT_XFERINFODATA, context)
        set(CURLOPT_NOPROGRESS, 0)
    }

    static func origin(_ url: URL) -> String {
        "\(url.scheme?.lowercased() ?? "")://\(url.host?.lowercased() ?? ""):\(url.port.map(String.init) ?? "")"
    }

    // MARK: - Running and errors

    private func perform(_ url: URL, state: CallbackState) throws {
        let started = ContinuousClock.now
        let result = withExtendedLifetime(state) { curl_easy_perform(handle) }
        var bodyBytes: curl_off_t = 0
        var headerBytes = 0
        _ = standby_curl_getinfo_off(handle, CURLINFO_SIZE_DOWNLOAD_T, &bodyBytes)
        _ = standby_curl_getinfo_long(handle, CURLINFO_HEADER_SIZE, &headerBytes)
        stats.bodyBytes += Int64(bodyBytes)
        stats.headerBytes += Int64(headerBytes)
        stats.requests += 1
        var offered = 0
        if standby_curl_getinfo_long(handle, CURLINFO_HTTPAUTH_AVAIL, &offered) == CURLE_OK, offered != 0 {
            authAsked[Self.origin(url)] = offered
        }
        logger.trace(
            "Transfer done",
            metadata: [
                "url": "\(Redaction.redacted(url))", "curl": "\(result.rawValue)", "bytes": "\(bodyBytes)",
                "elapsed": "\(ContinuousClock.now - started)",
            ])
        if result == CURLE_OK { return }
        if let sinkError = state.sinkError { throw sinkError }
        if result == CURLE_WRITE_ERROR && (state.finishedEarly || state.rangesIgnored) { return }
        throw mapError(result, url: url, state: state)
    }

    private func mapError(_ result: CURLcode, url: URL, state: CallbackState) -> TransportError {
        let detail = String(cString: errorBuffer)
        let curlText = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
        var httpCode = 0
        _ = standby_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &httpCode)
        var osErrno = 0
        _ = standby_curl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
        let code: TransportError.Code
        var message: String
        switch result {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            code = .unreachableHost
            message = "the host name does not resolve"
        case CURLE_COULDNT_CONNECT:
            if osErrno == Int(ECONNREFUSED) {
                code = .connectionRefused
                message = "connection refused (nothing listening on the port)"
            } else {
                code = .unreachableHost
                message = "the host cannot be reached"
            }
        case CURLE_OPERATION_TIMEDOUT:
            code = .timeout
            message = "the transfer timed out"
        case CURLE_LOGIN_DENIED, CURLE_REMOTE_ACCESS_DENIED, CURLE_AUTH_ERROR:
            code = .loginDenied
            message = "the server refused the login"
        case CURLE_REMOTE_FILE_NOT_FOUND:
            code = .notFound
            message = "no such file on the server"
        case CURLE_FILE_COULDNT_READ_FILE:
            if url.isFileURL && !FileManager.default.fileExists(atPath: url.path) {
                code = .notFound
                message = "no such file"
            } else {
                code = .loginDenied
                message = "the file cannot be read (permission denied?)"
            }
        case CURLE_HTTP_RETURNED_ERROR:
            switch httpCode {
            case 404, 410:
                code = .notFound
                message = "HTTP \(httpCode): no such file on the server"
            case 401 where url.scheme?.lowercased() == "http" && !options.allowInsecureAuth:
                code = .loginDenied
                message =
                    "HTTP 401: the server asks for credentials over plain http, where they would cross the network in clear, so none were sent; use https, or set allow_insecure_auth: true on the backup set"
            case 401, 403, 407:
                code = .loginDenied
                message = "HTTP \(httpCode): the server refused the login"
            case 416:
                code = .rangeNotSatisfiable
                message = "HTTP 416: the server cannot serve the byte range"
            default:
                code = .httpStatus
                message = "HTTP \(httpCode) from the server"
            }
        case CURLE_RANGE_ERROR:
            code = .rangeNotSatisfiable
            message = "the server cannot serve the byte range"
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING:
            code = .truncated
            message = "the transfer ended early after \(state.delivered) bytes"
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
            CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
            CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ENGINE_NOTFOUND,
            CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_CLIENTCERT:
            code = .tls
            message = "TLS failed"
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
            code = .badURL
            message = "the URL is malformed or its scheme is not supported"
        case CURLE_ABORTED_BY_CALLBACK:
            code = .cancelled
            message = "the transfer was cancelled"
        case CURLE_SSH:
            if curlText.localizedCaseInsensitiveContains("hostkey")
                || curlText.localizedCaseInsensitiveContains("host key")
            {
                code = .tls
                message = "the SSH host key does not match the one pinned"
            } else {
                code = .failed
                message = "SSH failed"
            }
        default:
            code = .failed
            message = "transfer failed"
        }
        let secrets = [options.credentials?.password, url.password, options.ssh.keyPassphrase].compactMap { $0 }
        message += ": " + Redaction.scrub(curlText, secrets: secrets)
        return TransportError(
            code, url: Redaction.redacted(url), host: url.host ?? "localhost", message: message,
            curlCode: Int(result.rawValue), httpStatus: httpCode > 0 ? httpCode : nil)
    }

    func error(_ code: TransportError.Code, _ url: URL, _ message: String) -> TransportError {
        TransportError(code, url: Redaction.redacted(url), host: url.host ?? "localhost", message: message)
    }

    private func timings() -> TransferTimings {
        func read(_ info: CURLINFO) -> Duration {
            var micros: curl_off_t = 0
            _ = standby_curl_getinfo_off(handle, info, &micros)
            return .microseconds(Int64(micros))
        }
        var t = TransferTimings()
        t.nameLookup = read(CURLINFO_NAMELOOKUP_TIME_T)
        t.connect = read(CURLINFO_CONNECT_TIME_T)
        t.appConnect = read(CURLINFO_APPCONNECT_TIME_T)
        t.firstByte = read(CURLINFO_STARTTRANSFER_TIME_T)
        t.total = read(CURLINFO_TOTAL_TIME_T)
        return t
    }

    private func certificates() -> [[String: String]] {
        var info: UnsafeMutablePointer<curl_certinfo>? = nil
        guard standby_curl_getinfo_certinfo(handle, &info) == CURLE_OK, let info else { return [] }
        var chain: [[String: String]] = []
        for index in 0..<standby_curl_certinfo_count(info) {
            var fields: [String: String] = [:]
            var item = standby_curl_certinfo_at(info, index)
            while let node = item {
                if let raw = node.pointee.data {
                    let line = String(cString: raw)
                    if let colon = line.firstIndex(of: ":") {
                        fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
                    }
                }
                item = node.pointee.next
            }
            chain.append(fields)
        }
        return chain
    }
}

/// What the C callbacks of one transfer reach through their user-data pointer.
final class CallbackState {
    let url: URL
    var sink: ((UnsafeRawBufferPointer) throws -> Void)?
    var sinkError: (any Error)?
    var range: ByteRange?
    var delivered: Int64 = 0
    /// Bytes of the body to drop before delivering (a server that answered a range with 200).
    var skip: Int64 = 0
    var finishedEarly = false
    var status = 0
    var headers: [(name: String, value: String)] = []
    var collectBody = false
    /// Keep every header line (for `request`); a transfer needs only the status lines.
    var collectHeaders = false
    var body = Data()
    var maxBody = Int.max
    var cancellation: CancellationFlag?
    var progress: ((TransferProgress) -> Void)?
    /// A request for several ranges: the ranges, where their bytes go, and the body being
    /// taken apart (made at the first body bytes, from the response's headers).
    var multiRanges: [ByteRange]?
    var rangesSink: ((Int, UnsafeRawBufferPointer) throws -> Void)?
    var rangesBody: ByteRangesBody?
    /// The server answered the multi-range request with the whole file (200): stopped at once.
    var rangesIgnored = false

    init(url: URL) { self.url = url }

    func header(named name: String) -> String? {
        headers.last { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    private func writeRanges(_ bytes: UnsafeRawBufferPointer, _ ranges: [ByteRange]) -> Int {
        do {
            if rangesBody == nil {
                guard status == 206 else {
                    rangesIgnored = true
                    return 0
                }
                rangesBody = try ByteRangesBody(
                    ranges: ranges, contentType: header(named: "Content-Type"),
                    contentRange: header(named: "Content-Range"))
            }
            try rangesBody?.feed(bytes) { index, part in
                try rangesSink?(index, part)
                delivered += Int64(part.count)
            }
            return bytes.count
        } catch {
            sinkError = error
            return 0
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        if let multiRanges { return writeRanges(bytes, multiRanges) }
        var slice = bytes[...]
        if skip > 0 {
            let dropped = Int(min(skip, Int64(slice.count)))
            slice = slice.dropFirst(dropped)
            skip -= Int64(dropped)
        }
        if let range {
            let room = range.length - delivered
            if room <= 0 {
                finishedEarly = true
                return 0
            }
            if Int64(slice.count) > room { slice = slice.prefix(Int(room)) }
        }
        if slice.isEmpty { return bytes.count }
        let part = UnsafeRawBufferPointer(rebasing: slice)
        if collectBody {
            guard body.count + part.count <= maxBody else {
                sinkError = TransportError(
                    .tooLarge, url: Redaction.redacted(url), host: url.host ?? "localhost",
                    message: "the response body is larger than \(maxBody) bytes")
                return 0
            }
            body.append(contentsOf: part)
        }
        if let sink {
            do {
                try sink(part)
            } catch {
                sinkError = error
                return 0
            }
        }
        delivered += Int64(part.count)
        if let range, delivered >= range.length, slice.count < bytes.count {
            finishedEarly = true
            return 0
        }
        return bytes.count
    }

    func header(_ bytes: UnsafeRawBufferPointer) {
        // "HTTP/": a status line, the only one a transfer needs; other lines only when kept.
        let isStatus = bytes.count >= 5 && bytes.prefix(5).elementsEqual("HTTP/".utf8)
        guard isStatus || collectHeaders else { return }
        header(String(decoding: bytes, as: UTF8.self))
    }

    func header(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("HTTP/") {
            // A new response (after a redirect or a 100 Continue): start over.
            let parts = trimmed.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = []
            skip = 0
            if status == 200, let range, range.offset > 0 {
                // The server ignored Range and sends the whole file: cut the range out here.
                skip = range.offset
            }
            return
        }
        guard let colon = trimmed.firstIndex(of: ":") else { return }
        let name = String(trimmed[..<colon])
        let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers.append((name: name, value: value))
    }
}

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    pointer, size, count, context in
    guard let context else { return 0 }
    let state = Unmanaged<CallbackState>.fromOpaque(context).takeUnretainedValue()
    guard let pointer else { return size * count }
    return state.write(UnsafeRawBufferPointer(start: pointer, count: size * count))
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    pointer, size, count, context in
    guard let context, let pointer else { return size * count }
    let state = Unmanaged<CallbackState>.fromOpaque(context).takeUnretainedValue()
    state.header(UnsafeRawBufferPointer(start: pointer, count: size * count))
    return size * count
}

private let progressCallback:
    @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
        context, downloadTotal, downloadNow, _, uploadNow in
        guard let context else { return 0 }
        let state = Unmanaged<CallbackState>.fromOpaque(context).takeUnretainedValue()
        if state.cancellation?.isCancelled == true { return 1 }
        state.progress?(
            TransferProgress(
                received: Int64(downloadNow), expected: downloadTotal > 0 ? Int64(downloadTotal) : nil,
                sent: Int64(uploadNow)))
        return 0
    }
