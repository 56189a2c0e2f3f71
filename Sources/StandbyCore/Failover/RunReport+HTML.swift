import Foundation

/// The report as one self-contained HTML page: inline CSS and an inline SVG Gantt chart of the
/// timeline, no script and nothing fetched from the network, so it can be mailed or archived.
extension RunReport {
    public func html(generatedAt: Date) -> String {
        var clientLine = ""
        if let client = clientVisible {
            clientLine = "<br>Client-visible recovery (\(Self.escape(client.srv))): \(Self.escape(client.explanation))"
        }
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>Standby report \(Self.escape(run.deployment)) run \(Self.escape(run.id))</title>
            <style>
            body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1c2733;background:#fff}
            h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #dde3ea}
            table{border-collapse:collapse;width:100%} td,th{white-space:normal;padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:left;vertical-align:top}
            th{background:#f3f6f9} .num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
            .state{font-weight:600} .succeeded{color:#1a7f37} .failed,.interrupted{color:#c62828} .skipped{color:#6b7785}
            .waiting-confirm,.waiting-off-peak{color:#b26a00} .running{color:#1f5fbf}
            pre{background:#f6f8fa;padding:6px 8px;margin:4px 0;max-height:240px;overflow:auto;font-size:12px}
            .meta{color:#4a5868} svg text{font:12px system-ui,sans-serif}
            </style></head><body>
            <h1>Failover of \(Self.escape(run.deployment)): run \(Self.escape(run.id))</h1>
            <p class="meta">Declared \(Self.time(run.declaredAt)) by <b>\(Self.escape(run.lead))</b>: \(Self.escape(run.reason))<br>
            Scenario \(Self.escape(run.scenario))\(run.planned ? " (planned)" : ""). State: <span class="state \(run.state)">\(run.state)</span>\(run.note.map { " — " + Self.escape($0) } ?? "")<br>
            Elapsed \(Self.span(run.elapsedSeconds)); recovery (declaration to the end of core and DNS): \(recoverySeconds.map(Self.span) ?? "not yet")\(clientLine)</p>

            """
        page += "<h2>Timeline</h2>\n" + gantt() + "\n"
        page +=
            "<h2>Stages and steps</h2>\n<table><tr><th>Step</th><th>Kind</th><th>State</th><th>Start (UTC)</th><th>End</th><th class=\"num\">Duration</th><th class=\"num\">Lost</th><th>Attempts</th></tr>\n"
        for stage in stages {
            page +=
                "<tr><th colspan=\"8\">Stage \(stage.number): \(Self.escape(stage.title)) — \(stage.durationSeconds.map(Self.span) ?? "not finished")</th></tr>\n"
            for step in stage.steps {
                page +=
                    "<tr><td>\(Self.escape(step.id))<br><span class=\"meta\">\(Self.escape(step.summary))</span></td>"
                page += "<td>\(step.kind)</td><td class=\"state \(step.state)\">\(step.state)</td>"
                page +=
                    "<td>\(step.startedAt.map(Self.clock) ?? "")</td><td>\(step.finishedAt.map(Self.clock) ?? "")</td>"
                // Duration: the last attempt's; Lost: the first attempt's start to the last one's.
                let lost = step.lostSeconds.map { "<td class=\"num lost\">\(Self.span($0))</td>" } ?? "<td></td>"
                page +=
                    "<td class=\"num\">\(step.durationSeconds.map(Self.span) ?? "")</td>\(lost)<td class=\"num\">\(step.attempts)</td></tr>\n"
                var details = ""
                if let waiting = step.waitingFor, !step.state.hasPrefix("succeeded") {
                    details += Self.escape(waiting) + "<br>"
                }
                if let lost = step.lostSeconds, let last = step.attemptStartedAt {
                    details +=
                        "Lost \(Self.span(lost)) to earlier attempts (a crash, failures); the last attempt started \(Self.clock(last))<br>"
                }
                if let error = step.error { details += "<span class=\"failed\">\(Self.escape(error))</span>" }
                if let tail = step.outputTail, !tail.isEmpty { details += "<pre>\(Self.escape(tail))</pre>" }
                if !details.isEmpty { page += "<tr><td></td><td colspan=\"7\">\(details)</td></tr>\n" }
            }
        }
        page += "</table>\n"
        if run.direction == Planner.Direction.failback.rawValue {
            page += "<h2>Backup sets moved back</h2>\n"
            page += "<table><tr><th>Set</th><th>Core</th><th>Version</th><th>Captured</th><th>Note</th></tr>\n"
            for set in sets {
                page +=
                    "<tr><td>\(Self.escape(set.name))</td><td>\(set.core ? "yes" : "")</td><td>\(Self.escape(set.version ?? "-"))</td>"
                page +=
                    "<td>\(set.capturedAt.map(Self.time) ?? "")</td><td>\(Self.escape(set.problem ?? (set.version == nil ? "not moved back yet" : "")))</td></tr>\n"
            }
            page += "</table>\n"
        }
        page += "<h2>Data-loss window per backup set</h2>\n"
        if run.direction == Planner.Direction.failback.rawValue {
            page += "<p class=\"meta\">A failback restores no backup set: it replicates them back, above.</p>\n"
        } else if sets.isEmpty {
            page += "<p class=\"meta\">The run restores no backup set.</p>\n"
        } else {
            page +=
                "<table><tr><th>Set</th><th>Core</th><th>Version</th><th>Captured</th><th class=\"num\">Data lost</th><th>Restored to</th></tr>\n"
            for set in sets {
                page +=
                    "<tr><td>\(Self.escape(set.name))</td><td>\(set.core ? "yes" : "")</td><td>\(Self.escape(set.version ?? "-"))</td>"
                page +=
                    "<td>\(set.capturedAt.map(Self.time) ?? "")</td><td class=\"num\">\(set.lossWindowSeconds.map(Self.span) ?? "unknown")</td>"
                page += "<td>\(Self.escape(set.restoredTo ?? set.problem ?? ""))</td></tr>\n"
            }
            page += "</table>\n"
        }
        page +=
            "<h2>Decisions</h2>\n<table><tr><th>When</th><th>Decision</th><th>Who</th><th>About</th><th>Why</th></tr>\n"
        for decision in decisions {
            page +=
                "<tr><td>\(Self.time(decision.at))</td><td>\(Self.escape(decision.kind))</td><td>\(Self.escape(decision.lead))</td>"
            page += "<td>\(Self.escape(decision.target ?? ""))</td><td>\(Self.escape(decision.reason))</td></tr>\n"
        }
        page += "</table>\n"
        if !dnsReplaced.isEmpty {
            page +=
                "<h2>DNS values replaced (kept for failback)</h2>\n<table><tr><th>Name</th><th>Type</th><th>TTL</th><th>Values</th></tr>\n"
            for record in dnsReplaced {
                page +=
                    "<tr><td>\(Self.escape(record.name))</td><td>\(record.type)</td><td>\(record.ttl)</td><td>\(Self.escape(record.values.joined(separator: ", ")))</td></tr>\n"
            }
            page += "</table>\n"
        }
        if !notRestored.isEmpty {
            page += "<h2>Not restored at the secondary</h2>\n<ul>\n"
            for item in notRestored {
                page += "<li><b>\(Self.escape(item.service))</b>: \(Self.escape(item.reason))</li>\n"
            }
            page += "</ul>\n"
        }
        page += "<p class=\"meta\">Generated \(Self.time(generatedAt)) by standby.</p>\n</body></html>\n"
        return page
    }

    static let colors = [
        "succeeded": "#2da44e", "failed": "#d32f2f", "interrupted": "#8e24aa", "skipped": "#9aa5b1",
        "waiting-confirm": "#f0a020", "waiting-off-peak": "#f0c060", "running": "#2f6fdf", "pending": "#cfd6de",
    ]

    /// The Gantt chart: one row per step, grouped by stage, x = seconds since the declaration.
    func gantt() -> String {
        let labelWidth = 300.0
        let chartWidth = 820.0
        let row = 22.0
        let steps = stages.flatMap(\.steps)
        let ends = steps.compactMap {
            $0.finishedAt ?? ($0.startedAt != nil ? run.declaredAt.addingTimeInterval(run.elapsedSeconds) : nil)
        }
        let total = max(ends.map { $0.timeIntervalSince(run.declaredAt) }.max() ?? 0, run.elapsedSeconds, 0.001)
        let scale = chartWidth / total
        let height = Double(steps.count + stages.count) * row + 40
        var svg =
            "<svg width=\"\(Int(labelWidth + chartWidth + 20))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"Timeline of run \(Self.escape(run.id))\">\n"
        svg += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#fbfcfd\"/>\n"
        // Ticks: about eight, on a round number of seconds.
        let step = Self.tickStep(total)
        var tick = 0.0
        while tick <= total + step / 2 {
            let x = labelWidth + tick * scale
            svg +=
                "<line x1=\"\(Self.f(x))\" y1=\"18\" x2=\"\(Self.f(x))\" y2=\"\(Self.f(height - 4))\" stroke=\"#e3e8ee\"/>"
            svg += "<text x=\"\(Self.f(x + 2))\" y=\"13\" fill=\"#4a5868\">\(Self.span(tick))</text>\n"
            tick += step
        }
        var y = 24.0
        for stage in stages {
            svg +=
                "<rect x=\"0\" y=\"\(Self.f(y))\" width=\"\(Int(labelWidth + chartWidth + 20))\" height=\"\(Self.f(row))\" fill=\"#eef2f6\"/>"
            svg +=
                "<text x=\"6\" y=\"\(Self.f(y + 15))\" font-weight=\"bold\">Stage \(stage.number): \(Self.escape(stage.title))</text>\n"
            if let start = stage.startedAt, let end = stage.finishedAt {
                let x = labelWidth + start.timeIntervalSince(run.declaredAt) * scale
                let w = max(2, end.timeIntervalSince(start) * scale)
                svg +=
                    "<rect x=\"\(Self.f(x))\" y=\"\(Self.f(y + 16))\" width=\"\(Self.f(w))\" height=\"4\" fill=\"#1c2733\"/>\n"
            }
            y += row
            for item in stage.steps {
                svg += "<text x=\"16\" y=\"\(Self.f(y + 15))\">\(Self.escape(Self.clip(item.id, 40)))</text>"
                let color = Self.colors[item.state] ?? "#cfd6de"
                if let first = item.startedAt {
                    // The time lost before the last attempt in grey, apart from the step's own bar.
                    let start = item.attemptStartedAt ?? first
                    if start > first {
                        let x = labelWidth + first.timeIntervalSince(run.declaredAt) * scale
                        let w = max(1, start.timeIntervalSince(first) * scale)
                        svg +=
                            "<rect x=\"\(Self.f(x))\" y=\"\(Self.f(y + 8))\" width=\"\(Self.f(w))\" height=\"\(Self.f(row - 16))\" fill=\"#b8c0c8\"><title>\(Self.escape(item.id)): \(item.lostSeconds.map(Self.span) ?? "") lost to earlier attempts</title></rect>"
                    }
                    let from = start.timeIntervalSince(run.declaredAt)
                    let to = (item.finishedAt ?? run.declaredAt.addingTimeInterval(run.elapsedSeconds))
                        .timeIntervalSince(run.declaredAt)
                    let x = labelWidth + from * scale
                    let w = max(3, (to - from) * scale)
                    svg +=
                        "<rect x=\"\(Self.f(x))\" y=\"\(Self.f(y + 4))\" width=\"\(Self.f(w))\" height=\"\(Self.f(row - 8))\" rx=\"2\" fill=\"\(color)\"><title>\(Self.escape(item.id)): \(item.state), \(item.durationSeconds.map(Self.span) ?? "")</title></rect>"
                } else {
                    svg +=
                        "<text x=\"\(Self.f(labelWidth + 4))\" y=\"\(Self.f(y + 15))\" fill=\"\(color == "#cfd6de" ? "#6b7785" : color)\">\(item.state)</text>"
                }
                svg += "\n"
                y += row
            }
        }
        svg += "</svg>"
        return svg
    }

    static func tickStep(_ total: Double) -> Double {
        let raw = total / 8
        for candidate in [
            0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600,
            43200, 86400,
        ] where candidate >= raw {
            return candidate
        }
        return 86400 * ((raw / 86400).rounded(.up))
    }

    /// `16:21:36.195` (UTC), for table cells; the header carries the full date.
    static func clock(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "HH:mm:ss.SSS"
        return formatter.string(from: date)
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func clip(_ text: String, _ count: Int) -> String {
        text.count <= count ? text : String(text.prefix(count - 1)) + "…"
    }

    public static func span(_ seconds: Double) -> String {
        if seconds < 10 { return String(format: "%.2fs", seconds) }
        if seconds < 120 { return String(format: "%.0fs", seconds) }
        return TimeSpan(milliseconds: Int64(seconds * 1000)).roughDescription
    }

    public static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
