extension ProbeRunner {
    /// The http probe goes through StandbyTransport (libcurl).
    func httpAttempt(_ target: HTTPTarget, deadline: ContinuousClock.Instant) async -> Attempt {
        Attempt(.down, "http probes need StandbyTransport (not yet merged)")
    }
}
