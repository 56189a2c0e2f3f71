import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A test hook: `STANDBY_KILL_AT=STEP_ID:POINT[,STEP_ID:POINT...]` makes the controller SIGKILL
/// itself at that point of the journal, so tests can prove a crash at every step boundary loses
/// nothing and repeats nothing. Points:
/// - `before`: the step is committed `running`, its side effect has not started;
/// - `after`: the side effect is done, its result not yet committed (the step reads `running`);
/// - `committed`: the step's end is committed, the next step not yet started;
/// and `declare:before`: preflight passed and the lease is held, the run not yet recorded.
/// Compiled into debug builds only; unset, it has no effect.
public struct KillPoints: Sendable {
    public var points: Set<String>

    public init(points: Set<String> = []) { self.points = points }

    public init(environment: [String: String]) {
        points = Set(
            (environment["STANDBY_KILL_AT"] ?? "").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            })
    }

    /// Kills the process at `stepId:point` when asked to. Debug builds only (the tests run the
    /// debug binary): a release build has no way to be told to kill itself.
    func check(_ stepId: String, _ point: String) {
        #if DEBUG
            if points.contains("\(stepId):\(point)") { kill(getpid(), SIGKILL) }
        #endif
    }
}
