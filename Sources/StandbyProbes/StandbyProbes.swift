// StandbyProbes: see the module sketch in README.md.
enum StandbyProbesModule {}
