// StandbyDNS: see the module sketch in README.md.
enum StandbyDNSModule {}
