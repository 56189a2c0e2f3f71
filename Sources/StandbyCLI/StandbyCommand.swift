import ArgumentParser

public struct StandbyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "standby",
        abstract: "Secondary-site failover controller for unified-communications deployments.")

    public init() {}
}
