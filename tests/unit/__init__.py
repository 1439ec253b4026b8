"""Unit tests: each layer of evserver on its own, no running server."""
