"""Deterministic orchestration: no I/O, no clock, no randomness but ``workflow.*``."""
