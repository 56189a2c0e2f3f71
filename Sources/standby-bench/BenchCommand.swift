import ArgumentParser

/// Benchmarks whose figures go in BENCHMARKS.md, each measured side by side with the tool an
/// operator would otherwise use. Each area is a subcommand in its own file.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standby-bench",
        abstract: "Measure Standby against cp, rsync, nsupdate and dig on loopback.",
        subcommands: [
            ReplicationBench.self, ReplicationWorker.self, HashingBench.self, DNSBench.self, GSSTSIGBench.self,
            ProbeBench.self, SMBBench.self, RestoreBench.self, RestoreWorker.self, ClusterBench.self,
        ])
}

/// A duration in seconds, for the figures the benchmarks print.
func seconds(_ duration: Duration) -> Double {
    let (whole, fraction) = duration.components
    return Double(whole) + Double(fraction) / 1e18
}
