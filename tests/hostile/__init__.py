"""Hostile clients against running servers: smuggling, paths, slowness, resources, fuzzing."""
