import Foundation
import Prometheus
import StandbyCore

/// The snapshot in the Prometheus text exposition format. A fresh registry per scrape: the label
/// sets (sets, probes, the run's stage and step) change over time, and a registry built from the
/// snapshot never exports a stale series.
public enum MetricsText {
    public static func render(_ snapshot: ServiceSnapshot) -> String {
        let registry = PrometheusCollectorRegistry()
        let now = snapshot.generatedAt

        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels
            ).set(value)
        }

        for set in snapshot.sets {
            let labels = [("set", set.name), ("kind", set.kind)]
            if let age = set.rpoAgeSeconds(at: now) {
                gauge(
                    "standby_set_rpo_age_seconds",
                    "Now minus the capture time of the newest verified version of the set.", labels, age)
            }
            gauge(
                "standby_set_rpo_target_seconds", "The set's RPO target from the topology.", labels,
                set.rpoTargetSeconds)
            if let verified = set.lastVerifiedAt {
                gauge(
                    "standby_set_last_verified_timestamp_seconds", "When the set's newest version was last verified.",
                    labels, verified.timeIntervalSince1970)
            }
            if let captured = set.capturedAt {
                gauge(
                    "standby_set_last_capture_timestamp_seconds",
                    "Capture time of the set's newest verified version.", labels, captured.timeIntervalSince1970)
            }
            gauge(
                "standby_set_stored_bytes", "Bytes of the set's versions kept in the store (before deduplication).",
                labels, Double(set.storedBytes))
            gauge("standby_set_versions", "Versions of the set kept in the store.", labels, Double(set.versions))
            gauge("standby_set_replicating", "1 while the set is being replicated.", labels, set.replicating ? 1 : 0)
        }

        for probe in snapshot.probes {
            let labels = [("probe", probe.name), ("site", probe.site), ("kind", probe.kind)]
            gauge(
                "standby_probe_up", "1 when the probe is up after hysteresis, 0 when down or not settled yet.", labels,
                probe.state == "up" ? 1 : 0)
            if let latency = probe.latencySeconds {
                gauge("standby_probe_latency_seconds", "Latency of the probe's last attempt.", labels, latency)
            }
        }

        for site in snapshot.sites {
            gauge(
                "standby_site_up", "1 when every settled probe of the site is up.", [("site", site.site)],
                site.verdict == "up" ? 1 : 0)
        }

        if let run = snapshot.failover {
            let active = run.finishedAt == nil
            gauge(
                "standby_failover_active", "1 while a failover run is active.", [("run", run.runId)], active ? 1 : 0)
            gauge(
                "standby_failover_duration_seconds", "Since the loss was declared (to the end when finished).",
                [("run", run.runId)], run.durationSeconds(at: now))
            gauge(
                "standby_failover_stage", "The stage the run is at (1 core, 2 DNS, 3 optional); 0 when done.",
                [("run", run.runId), ("state", run.state)], Double(run.currentStage ?? 0))
            if let step = run.currentStep {
                gauge(
                    "standby_failover_step_info", "The step the run is at.",
                    [("run", run.runId), ("stage", "\(run.currentStage ?? 0)"), ("step", step)], 1)
            }
            for stage in run.stages {
                for step in stage.steps {
                    if let seconds = step.durationSeconds {
                        gauge(
                            "standby_failover_step_duration_seconds", "How long each finished or running step took.",
                            [
                                ("run", run.runId), ("stage", "\(stage.number)"), ("step", step.id),
                                ("state", step.state),
                            ],
                            seconds)
                    }
                }
            }
        } else {
            gauge("standby_failover_active", "1 while a failover run is active.", [("run", "")], 0)
        }

        if let cluster = snapshot.cluster {
            gauge(
                "standby_cluster_leader", "1 on the node that holds the cluster's leader key, 0 on the others.",
                [("node", cluster.node)], cluster.leader == cluster.node ? 1 : 0)
            gauge(
                "standby_cluster_leader_info", "The node that holds the leader key (empty while none does).",
                [("leader", cluster.leader ?? ""), ("node", cluster.node)], 1)
            gauge(
                "standby_cluster_nodes", "Controllers registered in etcd.", [("node", cluster.node)],
                Double(cluster.nodes.count))
        }

        for job in snapshot.jobs {
            let labels = [("job", job.key)]
            if let succeeded = job.lastSucceeded {
                gauge(
                    "standby_job_last_success_timestamp_seconds", "When the scheduled job last succeeded.", labels,
                    succeeded.timeIntervalSince1970)
            }
            gauge("standby_job_failures", "Consecutive failures of the scheduled job.", labels, Double(job.failures))
            gauge("standby_job_running", "1 while the scheduled job runs.", labels, job.running ? 1 : 0)
        }

        gauge(
            "standby_service_start_timestamp_seconds", "When this standby run started.",
            [("deployment", snapshot.deployment)], snapshot.startedAt.timeIntervalSince1970)
        return registry.emitToString()
    }
}
