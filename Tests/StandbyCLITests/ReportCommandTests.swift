import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("standby report and status", .tags(.failover))
struct ReportCommandTests {
    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    /// A run with a retried step, a confirmed manual step and a service run now, rendered as HTML,
    /// loaded in headless Chromium, and the screenshot's pixels read back.
    @Test("the HTML report renders its timeline in headless Chromium", .tags(.server))
    func htmlRendersInChromium() async throws {
        let lab = try LabDirectory(prefix: "engine-report")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: restore-db, exec: [sh, -c, "sleep 0.3; echo restored rtc >> EFFECTS"] }
                      - { name: start, exec: [sh, -c, "sleep 0.2; echo '<started>'; echo started >> EFFECTS"] }
                      - { name: rehome, manual: Re-home users }
                      - { name: validate, exec: [sh, -c, "sleep 0.2; echo validated >> EFFECTS"] }
                  - name: conf
                    tier: optional
                    priority: 5
                    roles: [front-end]
                    steps:
                      - { name: start, exec: [sh, -c, "sleep 0.1; echo conf >> EFFECTS"] }
                """)
        let state = ["--state", site.state]
        let failover = try await standby.run(
            [
                "failover", site.directory, "--declare", "Redmond flooded", "--lead", "alice", "--yes", "--now",
                "2026-11-25T12:00:00Z",
            ] + state,
            in: lab)
        #expect(failover.status == 4, "\(failover)")
        #expect(
            try await standby.run(
                ["confirm", site.directory, "core/rehome", "--lead", "bob", "--at", "2026-11-25T12:00:00Z"] + state,
                in: lab
            ).status == 4)
        #expect(
            try await standby.run(["resume", site.directory, "--now", "conf", "--lead", "bob"] + state, in: lab).status
                == 0)

        let html = lab.file("report.html")
        let report = try await standby.run(["report", site.directory, "--html", html] + state, in: lab)
        #expect(report.status == 0, "\(report)")
        #expect(report.stdout.contains("Stage 1: Core services"))
        #expect(report.stdout.contains("Redmond flooded"))
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.contains("<svg"))
        #expect(!page.contains("<script"), "self-contained: no scripts")
        #expect(!page.contains("http://") && !page.contains("https://"), "nothing fetched from the network")
        #expect(page.contains("&lt;started&gt;"), "output is escaped")

        let chromium = try Programs.locate("chromium", package: "chromium")
        let png = lab.file("report.png")
        var arguments = [
            "--headless", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(lab.file("chromium"))",
            "--screenshot=\(png)", "--window-size=1200,900", "file://\(html)",
        ]
        if geteuid() == 0 { arguments.insert("--no-sandbox", at: 0) }
        let shot = try await StandbyRunner(path: chromium).run(arguments, in: lab)
        #expect(shot.status == 0, "\(shot)")
        #expect(FileManager.default.fileExists(atPath: png), "\(shot)")

        // Decode the PNG (zlib, row filters) and look at its pixels: a blank page is one colour;
        // the chart has the succeeded bars' green (#2da44e).
        let python = try Programs.locate("python3", package: "python3")
        let pixels = try await StandbyRunner(path: python).run(["-c", Self.pngSummary, png], in: lab)
        #expect(pixels.status == 0, "\(pixels)")
        let fields = pixels.stdout.split(separator: " ").compactMap {
            Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        try #require(fields.count == 4, "\(pixels)")
        #expect(fields[0] == 1200 && fields[1] == 900, "size \(fields[0])x\(fields[1])")
        #expect(fields[2] > 20, "distinct colours: \(fields[2])")
        #expect(fields[3] > 200, "green bar pixels: \(fields[3])")
    }

    /// Prints `WIDTH HEIGHT DISTINCT_COLOURS GREEN_PIXELS` of an 8-bit RGB/RGBA PNG.
    static let pngSummary = #"""
        import sys, zlib, struct
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
        pos, idat = 8, b''
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind == b'IHDR':
                width, height, depth, colour = struct.unpack('>IIBB', body[:10])
            elif kind == b'IDAT':
                idat += body
            pos += 12 + length
        assert depth == 8 and colour in (2, 6), 'unexpected PNG format'
        bpp = 3 if colour == 2 else 4
        raw = zlib.decompress(idat)
        stride = width * bpp
        prev = bytearray(stride)
        colours, green, i = set(), 0, 0
        for y in range(height):
            f = raw[i]; row = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
            for x in range(stride):
                a = row[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if f == 1: row[x] = (row[x] + a) & 255
                elif f == 2: row[x] = (row[x] + b) & 255
                elif f == 3: row[x] = (row[x] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            for x in range(0, stride, bpp):
                px = bytes(row[x:x + 3])
                colours.add(px)
                if abs(px[0] - 0x2d) < 8 and abs(px[1] - 0xa4) < 8 and abs(px[2] - 0x4e) < 8: green += 1
            prev = row
        print(width, height, len(colours), green)
        """#

    @Test("status --json shows the run's stage, step and what it waits for")
    func statusJSON() async throws {
        let lab = try LabDirectory(prefix: "engine-status")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let empty = try await standby.run(["status", site.directory, "--state", site.state], in: lab)
        #expect(empty.status == 0)
        #expect(empty.stdout.contains("no run"), "\(empty)")
        _ = try await standby.run(
            [
                "failover", site.directory, "--state", site.state, "--declare", "lost", "--lead", "alice", "--yes",
                "--now", "2026-11-25T12:00:00Z",
            ],
            in: lab)
        let status = try await standby.run(["status", site.directory, "--state", site.state, "--json"], in: lab)
        #expect(status.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let run = try #require(json?["run"] as? [String: Any], "\(status)")
        #expect(run["state"] as? String == "waiting")
        #expect(run["stage"] as? Int == 2)
        #expect(run["currentStep"] as? String == "conf/start")
        #expect((run["waitingFor"] as? String)?.contains("off-peak") == true)
        #expect(run["stepsDone"] as? Int == 3)
    }
}
