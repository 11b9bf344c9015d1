"""Shared pieces: a simulated wide-area network."""
