import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// nginx serving a directory over plain HTTP on a free loopback port: static files with
/// Content-Length, Last-Modified and Range support, keep-alive for many range requests.
/// Its pid, logs and temporary files live in the lab directory.
public final class NginxServer: Sendable {
    public let port: UInt16
    /// The directory served at `/`.
    public let root: String
    public let process: ServerProcess
    public let accessLogPath: String
    /// `http://127.0.0.1:PORT/`
    public let baseURL: URL

    init(port: UInt16, root: String, process: ServerProcess, accessLogPath: String, baseURL: URL) {
        self.baseURL = baseURL
        self.port = port
        self.root = root
        self.process = process
        self.accessLogPath = accessLogPath
    }

    /// The URL of `relativePath` under the served root.
    public func url(_ relativePath: String) -> URL {
        baseURL.appendingPathComponent(relativePath)
    }

    public func stop() { process.stop() }

    /// The access log's lines, one a request, once no line has come for `settle` (nginx writes
    /// a line after the response has gone out, or once it sees the client went away).
    public func requestLines(settle: Duration = .milliseconds(300)) -> [String] {
        var lines: [String] = []
        var stableSince = ContinuousClock.now
        while true {
            let now = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
            let read = now.split(separator: "\n").map(String.init)
            if read.count != lines.count {
                lines = read
                stableSince = .now
            } else if ContinuousClock.now - stableSince >= settle {
                return lines
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// The access log once `condition` holds of it, or as it is after `timeout`: nginx writes a
    /// request's line after the response has gone out, so a client can be done before it.
    public func accessLog(until condition: (String) -> Bool, timeout: Duration = .seconds(10)) -> String {
        let deadline = ContinuousClock.now + timeout
        var log = ""
        repeat {
            log = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
            if condition(log) { break }
            Thread.sleep(forTimeInterval: 0.02)
        } while ContinuousClock.now < deadline
        return log
    }

    /// Starts nginx serving `root` (default: a `www` directory in the lab), with `extraServer`
    /// appended inside the server block (locations, auth). Waits until it accepts connections.
    public static func start(
        in lab: LabDirectory, serving root: String? = nil, extraServer: String = "", host: String = "127.0.0.1",
        port: UInt16? = nil
    ) throws -> NginxServer {
        let nginx = try Programs.locate("nginx", package: "nginx-light")
        let prefix = try lab.directory("nginx")
        let served = try root ?? lab.directory("www")
        for temp in ["client", "proxy", "fastcgi", "uwsgi", "scgi"] {
            _ = try lab.directory("nginx/tmp/\(temp)")
        }
        let port = try port ?? Ports.free(on: host)
        guard let baseURL = URL(string: "http://\(host):\(port)/") else {
            throw LabError(.setupFailed, "no URL for port \(port)")
        }
        // Workers of a root master switch to `nobody`, who cannot read a 0700 temp directory.
        let user = geteuid() == 0 ? "user root;" : ""
        let accessLog = prefix + "/access.log"
        let config = """
            \(user)
            worker_processes 1;
            pid \(prefix)/nginx.pid;
            error_log \(prefix)/error.log info;
            events { worker_connections 512; }
            http {
                default_type application/octet-stream;
                access_log \(accessLog);
                client_body_temp_path \(prefix)/tmp/client;
                proxy_temp_path \(prefix)/tmp/proxy;
                fastcgi_temp_path \(prefix)/tmp/fastcgi;
                uwsgi_temp_path \(prefix)/tmp/uwsgi;
                scgi_temp_path \(prefix)/tmp/scgi;
                sendfile on;
                keepalive_requests 1000000;
                keepalive_timeout 60s;
                server {
                    listen \(host):\(port);
                    root \(served);
                    location / { }
                    \(extraServer)
                }
            }
            """
        let configPath = prefix + "/nginx.conf"
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        let process = try ServerProcess.spawnListening(
            name: "nginx", executable: nginx,
            arguments: ["-p", prefix, "-c", configPath, "-e", prefix + "/error.log", "-g", "daemon off;"],
            logPath: prefix + "/stderr.log", host: host, port: port, extraLog: prefix + "/error.log")
        return NginxServer(
            port: port, root: served, process: process, accessLogPath: accessLog, baseURL: baseURL)
    }
}
