// StandbyTransport: see the module sketch in README.md.
enum StandbyTransportModule {}
