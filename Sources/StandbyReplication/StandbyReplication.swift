// StandbyReplication: see the module sketch in README.md.
enum StandbyReplicationModule {}
