"""Test support code shared by the suites (emulators, helpers that need real services)."""
