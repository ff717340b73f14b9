"""An emulator of the edge-cloud platform API over a real Ceph pool, for tests and demos."""
