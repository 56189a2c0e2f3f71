import ArgumentParser
import StandbyLab

/// The lab's own command: starts and stops the loopback servers of `sites/lab` for the demo.
@main
struct StandbyLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standby-lab",
        abstract: "Start and stop the loopback servers of the Standby lab.")

    func run() throws {
        print("standby-lab: no servers yet")
    }
}
