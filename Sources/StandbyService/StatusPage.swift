import Foundation
import StandbyCore

/// The status page for the incident lead: one self-contained HTML document (inline CSS and SVG, no
/// script, no network) that refreshes itself. What matters first comes first: a running failover,
/// then each set's data-loss window against its target, then the health of both sites.
public enum StatusPage {
    public static func render(_ s: ServiceSnapshot) -> String {
        var html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="refresh" content="15">
            <title>standby · \(escape(s.deployment))</title>
            <style>\(css)</style></head><body>
            <header><h1>\(escape(s.deployment))</h1>
            <p class="sub">\(escape(s.primarySite)) → \(escape(s.secondarySite)) · as of \(time(s.generatedAt)) UTC · service up since \(time(s.startedAt))</p>
            <div class="sites">
            """
        for site in s.sites {
            html += "<span class=\"badge \(verdictClass(site.verdict))\">\(escape(site.site)): \(escape(site.verdict))"
            if let since = site.since { html += " since \(time(since))" }
            html += "</span>"
        }
        if s.sites.isEmpty { html += "<span class=\"badge unknown\">no health verdict yet</span>" }
        html += "</div>"
        if let cluster = s.cluster { html += Self.cluster(cluster) }
        html += "</header>\n"
        for problem in s.problems { html += "<p class=\"problem\">\(escape(problem))</p>\n" }
        html += failover(s)
        html += rpo(s)
        html += health(s)
        html += jobs(s)
        html += "</body></html>\n"
        return html
    }

    // MARK: Sections

    /// Cluster mode: which node this page is from and which one leads (the run below is the
    /// cluster's, from etcd, whichever node serves the page).
    static func cluster(_ c: ServiceSnapshot.ClusterLine) -> String {
        let role = c.leader == c.node ? "the leader" : "a follower"
        let leader = c.leader.map { "leader: node \(escape($0))" + (c.term.map { " (term \($0))" } ?? "") }
        return
            "<p class=\"sub\">cluster: node \(escape(c.node)), \(role) · \(leader ?? "no leader now") · nodes: \(c.nodes.map(escape).joined(separator: ", "))</p>"
    }

    static func failover(_ s: ServiceSnapshot) -> String {
        var html = "<section><h2>Failover</h2>"
        guard let run = s.failover else {
            return html + "<p class=\"quiet\">No failover run.</p></section>\n"
        }
        let steps = run.stages.flatMap(\.steps)
        let done = steps.filter { $0.state == "succeeded" || $0.state == "skipped" }.count
        html += """
            <p><b>\(escape(run.runId))</b> · \(escape(run.scenario)) · declared by \(escape(run.lead)) at \(time(run.declaredAt)) · \
            <span class="badge \(stateClass(run.state))">\(escape(run.state))</span> · \(duration(run.durationSeconds(at: s.generatedAt))) · \
            \(done)/\(steps.count) steps</p>
            """
        if let step = run.currentStep {
            html += "<p>At stage \(run.currentStage ?? 0), step <b>\(escape(step))</b>"
            if let waiting = run.waitingFor { html += " — waiting for \(escape(waiting))" }
            html += "</p>"
        }
        // One row of boxes per stage, one box per step, coloured by state.
        let box = 22
        let width = 160 + max(1, run.stages.map(\.steps.count).max() ?? 1) * (box + 4)
        let height = run.stages.count * (box + 10) + 10
        html +=
            "<svg class=\"progress\" width=\"\(width)\" height=\"\(height)\" role=\"img\" aria-label=\"failover progress\">"
        for (row, stage) in run.stages.enumerated() {
            let y = 10 + row * (box + 10)
            html += "<text x=\"0\" y=\"\(y + 16)\">Stage \(stage.number): \(escape(stage.kind))</text>"
            for (column, step) in stage.steps.enumerated() {
                let x = 160 + column * (box + 4)
                html +=
                    "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(box)\" height=\"\(box)\" rx=\"3\" fill=\"\(stepColour(step.state))\">"
                html +=
                    "<title>\(escape(step.service)) · \(escape(step.id)): \(escape(step.state))\(step.node.map { " on node " + escape($0) } ?? "") — \(escape(step.summary))</title></rect>"
            }
        }
        html += "</svg></section>\n"
        return html
    }

    static func rpo(_ s: ServiceSnapshot) -> String {
        var html = "<section><h2>Data-loss window (RPO) per backup set</h2>"
        if s.sets.isEmpty { return html + "<p class=\"quiet\">No backup sets.</p></section>\n" }
        let rowHeight = 30
        let label = 190
        let barWidth = 640
        let height = s.sets.count * rowHeight + 24
        html +=
            "<svg class=\"rpo\" width=\"\(label + barWidth + 190)\" height=\"\(height)\" role=\"img\" aria-label=\"RPO per set\">"
        for (row, set) in s.sets.enumerated() {
            let y = row * rowHeight + 4
            let age = set.rpoAgeSeconds(at: s.generatedAt)
            let target = max(set.rpoTargetSeconds, 1)
            // The scale runs to twice the target, so the target line sits in the middle.
            let fraction = age.map { min($0 / (2 * target), 1) } ?? 1
            let colour: String
            switch age {
            case nil: colour = "#b42318"
            case let a? where a > target: colour = "#b42318"
            case let a? where a > 0.75 * target: colour = "#dc8a00"
            default: colour = "#2e7d32"
            }
            let name = set.replicating ? "\(set.name) ⟳" : set.name
            html += "<text x=\"0\" y=\"\(y + 17)\">\(escape(name))</text>"
            html += "<rect x=\"\(label)\" y=\"\(y)\" width=\"\(barWidth)\" height=\"22\" fill=\"#eceff1\"/>"
            html +=
                "<rect x=\"\(label)\" y=\"\(y)\" width=\"\(Int(Double(barWidth) * fraction))\" height=\"22\" fill=\"\(colour)\">"
            html +=
                "<title>\(escape(set.name)): \(age.map(duration) ?? "no verified version") of \(duration(target)) allowed</title></rect>"
            html +=
                "<line x1=\"\(label + barWidth / 2)\" x2=\"\(label + barWidth / 2)\" y1=\"\(y - 2)\" y2=\"\(y + 24)\" stroke=\"#263238\" stroke-width=\"2\"/>"
            let text = age.map { "\(duration($0)) / \(duration(target))" } ?? "none verified / \(duration(target))"
            html += "<text x=\"\(label + barWidth + 8)\" y=\"\(y + 17)\">\(escape(text))</text>"
        }
        html += "<text x=\"\(label + barWidth / 2 - 20)\" y=\"\(height - 4)\" class=\"axis\">target</text>"
        html += "</svg>"
        html +=
            "<table><tr><th>set</th><th>kind</th><th>captured</th><th>verified</th><th>versions</th><th>stored</th></tr>"
        for set in s.sets {
            html += "<tr><td>\(escape(set.name))</td><td>\(escape(set.kind))</td>"
            html += "<td>\(set.capturedAt.map(time) ?? "—")</td><td>\(set.lastVerifiedAt.map(time) ?? "—")</td>"
            html += "<td>\(set.versions)</td><td>\(ByteCount.text(set.storedBytes))</td></tr>"
        }
        return html + "</table></section>\n"
    }

    static func health(_ s: ServiceSnapshot) -> String {
        var html = "<section><h2>Health, last 24 hours</h2>"
        let end = s.generatedAt
        let start = end.addingTimeInterval(-86400)
        let label = 190
        let width = 640
        let sites = s.sites.map(\.site)
        let height = max(1, sites.count) * 30 + 26
        html +=
            "<svg class=\"timeline\" width=\"\(label + width + 20)\" height=\"\(height)\" role=\"img\" aria-label=\"health timeline\">"
        for (row, site) in sites.enumerated() {
            let y = row * 30 + 4
            html += "<text x=\"0\" y=\"\(y + 17)\">\(escape(site))</text>"
            html += "<rect x=\"\(label)\" y=\"\(y)\" width=\"\(width)\" height=\"22\" fill=\"#eceff1\"/>"
            // Segments from the site's verdict transitions, oldest first.
            let events = s.timeline.filter { $0.isSite && $0.subject == site }.sorted { $0.at < $1.at }
            var segments: [(from: Date, to: Date, verdict: String)] = []
            var current: (Date, String)? = events.last(where: { $0.at <= start }).map { (start, $0.to) }
            for event in events where event.at > start {
                if let (from, verdict) = current { segments.append((from, event.at, verdict)) }
                current = (event.at, event.to)
            }
            if let (from, verdict) = current { segments.append((from, end, verdict)) }
            for segment in segments {
                let x0 = Double(width) * max(0, segment.from.timeIntervalSince(start)) / 86400
                let x1 = Double(width) * min(86400, segment.to.timeIntervalSince(start)) / 86400
                html +=
                    "<rect x=\"\(label + Int(x0))\" y=\"\(y)\" width=\"\(max(2, Int(x1 - x0)))\" height=\"22\" fill=\"\(verdictColour(segment.verdict))\">"
                html += "<title>\(escape(site)) \(escape(segment.verdict)) from \(time(segment.from))</title></rect>"
            }
        }
        html += "<text x=\"\(label)\" y=\"\(height - 4)\" class=\"axis\">-24 h</text>"
        html += "<text x=\"\(label + width - 24)\" y=\"\(height - 4)\" class=\"axis\">now</text>"
        html += "</svg>"
        html +=
            "<table><tr><th>probe</th><th>site</th><th>kind</th><th>state</th><th>latency</th><th>last</th><th>detail</th></tr>"
        for probe in s.probes {
            html += "<tr><td>\(escape(probe.name))</td><td>\(escape(probe.site))</td><td>\(escape(probe.kind))</td>"
            html += "<td><span class=\"badge \(verdictClass(probe.state))\">\(escape(probe.state))</span></td>"
            html += "<td>\(probe.latencySeconds.map { String(format: "%.1f ms", $0 * 1000) } ?? "—")</td>"
            html += "<td>\(probe.at.map(time) ?? "—")</td><td>\(escape(probe.detail))</td></tr>"
        }
        html += "</table>"
        let recent = s.timeline.prefix(15)
        if !recent.isEmpty {
            html += "<h3>Recent changes</h3><ul class=\"events\">"
            for event in recent {
                html +=
                    "<li>\(time(event.at)) <b>\(escape(event.subject))</b> \(escape(event.from)) → \(escape(event.to))"
                if !event.detail.isEmpty { html += " — \(escape(event.detail))" }
                html += "</li>"
            }
            html += "</ul>"
        }
        return html + "</section>\n"
    }

    static func jobs(_ s: ServiceSnapshot) -> String {
        var html =
            "<section><h2>Scheduled jobs</h2><table><tr><th>job</th><th>state</th><th>last success</th><th>failures</th><th>detail</th></tr>"
        for job in s.jobs {
            let state = job.running ? "running" : (job.failures > 0 ? "failing" : "idle")
            html += "<tr><td>\(escape(job.key))</td><td>\(state)</td><td>\(job.lastSucceeded.map(time) ?? "—")</td>"
            html += "<td>\(job.failures)</td><td>\(escape(String(job.detail.prefix(200))))</td></tr>"
        }
        return html + "</table></section>\n"
    }

    // MARK: Helpers

    static let css = """
        body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 24px 24px;color:#1c2327;background:#fafbfc}
        header{border-bottom:3px solid #263238;margin-bottom:12px}h1{margin:12px 0 0;font-size:26px}
        .sub{margin:2px 0 8px;color:#546e7a}h2{font-size:18px;margin:18px 0 6px}h3{font-size:15px}
        section{background:#fff;border:1px solid #cfd8dc;border-radius:6px;padding:4px 16px 12px;margin-bottom:14px}
        .badge{display:inline-block;padding:2px 10px;border-radius:10px;margin:0 6px 8px 0;color:#fff;font-weight:600}
        .up,.succeeded,.done{background:#2e7d32}.degraded,.waiting,.running{background:#dc8a00}
        .unreachable,.down,.failed,.halted,.interrupted,.aborted{background:#b42318}.unknown,.pending{background:#78909c}
        table{border-collapse:collapse;margin-top:8px}td,th{padding:3px 10px;border-bottom:1px solid #eceff1;text-align:left}
        svg text{font:13px system-ui,sans-serif;fill:#1c2327}svg .axis{fill:#78909c;font-size:11px}
        .quiet{color:#78909c}.problem{color:#b42318;font-weight:600}ul.events{padding-left:18px}
        """

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withDashSeparatorInDate]
        return formatter.string(from: date).replacingOccurrences(of: "T", with: " ")
    }

    static func duration(_ seconds: Double) -> String {
        TimeSpan(milliseconds: Int64(max(0, seconds) * 1000)).roughDescription
    }

    static func verdictClass(_ verdict: String) -> String {
        ["up", "degraded", "unreachable", "down"].contains(verdict) ? verdict : "unknown"
    }

    static func stateClass(_ state: String) -> String {
        ["succeeded", "done", "waiting", "running", "failed", "halted", "interrupted", "aborted"].contains(state)
            ? state : "pending"
    }

    static func verdictColour(_ verdict: String) -> String {
        switch verdict {
        case "up": "#2e7d32"
        case "degraded": "#dc8a00"
        case "unreachable", "down": "#b42318"
        default: "#90a4ae"
        }
    }

    static func stepColour(_ state: String) -> String {
        switch state {
        case "succeeded": "#2e7d32"
        case "skipped": "#81c784"
        case "running": "#1565c0"
        case "waiting": "#dc8a00"
        case "failed", "interrupted": "#b42318"
        default: "#b0bec5"
        }
    }
}
