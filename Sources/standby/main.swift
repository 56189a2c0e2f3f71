import StandbyCLI

StandbyCommand.main()
