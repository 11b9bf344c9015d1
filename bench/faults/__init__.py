"""Fault scenarios against a real daemon (`python3 -m bench.faults.run`)."""
