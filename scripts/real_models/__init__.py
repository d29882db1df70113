"""Readers and converters for scripts/real-models.py (see scripts/README.md)."""
