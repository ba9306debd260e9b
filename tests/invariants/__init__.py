"""The randomized invariant harness (docs/guarantees.md): seeded scenarios over the real
operators, triggers and the emulator over loopback, checked against the emulator's record."""
