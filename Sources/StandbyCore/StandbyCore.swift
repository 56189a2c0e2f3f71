// StandbyCore: see the module sketch in README.md.
enum StandbyCoreModule {}
