import StandbyCLI

await StandbyCommand.runMain()
