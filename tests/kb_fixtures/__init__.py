"""Helpers for the knowledge-base tests (tests/test_kb_*.py)."""
