"""Benchmarks: they print their figures; nothing here asserts on time."""
