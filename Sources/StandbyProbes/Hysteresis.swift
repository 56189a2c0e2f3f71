import Foundation

/// How many consecutive results it takes to change a probe's state: one lost packet changes nothing.
public struct Hysteresis: Sendable, Hashable, Codable {
    /// Consecutive failures before a probe counts as down.
    public var fall: Int
    /// Consecutive successes before a probe counts as up again.
    public var rise: Int

    public init(fall: Int = 3, rise: Int = 2) throws {
        guard fall >= 1, rise >= 1 else {
            throw ProbeError(.badConfiguration, "fall (\(fall)) and rise (\(rise)) must be at least 1")
        }
        self.fall = fall
        self.rise = rise
    }

    /// One result decides: for a one-shot check.
    public static let immediate = Hysteresis(uncheckedFall: 1, rise: 1)

    init(uncheckedFall fall: Int, rise: Int) {
        self.fall = fall
        self.rise = rise
    }
}

/// One probe's hysteresis counters.
public struct ProbeHealth: Sendable, Hashable {
    public private(set) var state: ProbeState = .unknown
    public private(set) var consecutiveSuccesses = 0
    public private(set) var consecutiveFailures = 0

    public init() {}

    /// Records one attempt; returns the new state when it changed.
    public mutating func record(success: Bool, policy: Hysteresis) -> ProbeState? {
        if success {
            consecutiveSuccesses += 1
            consecutiveFailures = 0
            if state != .up && consecutiveSuccesses >= policy.rise {
                state = .up
                return .up
            }
        } else {
            consecutiveFailures += 1
            consecutiveSuccesses = 0
            if state != .down && consecutiveFailures >= policy.fall {
                state = .down
                return .down
            }
        }
        return nil
    }
}
