import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A step never runs twice at once. An exec step runs in its own process group, so it outlives a
/// controller killed with -9; the next `resume` or `retry` finds its process in the journal and,
/// before the step runs again, waits for it or ends it.
extension FailoverEngine {
    /// What `resume` and `retry` do with an earlier attempt of a step that is still running.
    public enum EarlierAttempts: Sendable, Equatable {
        /// Wait for it to end, at most until the step's timeout counted from that attempt's start;
        /// then end its group, as its own controller would have.
        case wait
        /// End its process group at once (`--kill-orphans`).
        case end
    }

    /// Waits for, or ends, a live earlier attempt of `step` (same pid and same start time as the
    /// journal recorded). Returns at once when there is none.
    func settleEarlierAttempt(of step: RunStep, timeout: TimeSpan?) async throws {
        guard let process = step.process, process.isAlive else { return }
        let started = step.attemptStartedAt.map { RunReport.time($0) } ?? "at an unknown time"
        switch earlierAttempts {
        case .end:
            await end(process)
            progress(
                "\(step.stepId): ended the earlier attempt's process group \(process.group) (pid \(process.pid), started \(started)); --kill-orphans"
            )
        case .wait:
            let deadline = timeout.map { (step.attemptStartedAt ?? Date()).addingTimeInterval($0.seconds) }
            let bound =
                deadline.map { "at most until its timeout, \(RunReport.time($0))" }
                ?? "the step has no timeout; `--kill-orphans` ends it instead"
            progress(
                "waiting for the earlier attempt of \(step.stepId) (pid \(process.pid), started \(started)) to finish (\(bound))"
            )
            while process.isAlive {
                if let deadline, Date() >= deadline {
                    await end(process)
                    progress(
                        "\(step.stepId): the earlier attempt ran past its timeout; ended its process group \(process.group)"
                    )
                    return
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            progress("\(step.stepId): the earlier attempt (pid \(process.pid)) finished")
        }
    }

    /// SIGTERM to the group, then SIGKILL if its leader is still there after the grace period.
    /// Every signal goes only while the leader is the recorded process (`signalGroup`).
    func end(_ process: StepProcess) async {
        process.signalGroup(SIGTERM)
        let grace = ContinuousClock.now + endGrace
        while process.isAlive && ContinuousClock.now < grace {
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard process.isAlive else { return }
        process.signalGroup(SIGKILL)
        // SIGKILL cannot be caught; the leader is gone as soon as the kernel has torn it down.
        let torn = ContinuousClock.now + .seconds(5)
        while process.isAlive && ContinuousClock.now < torn {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
