"""Emulated Linux MM stack with per-process page size."""
