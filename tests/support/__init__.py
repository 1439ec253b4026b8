"""Helpers the tests and the tools share (no tests here)."""
