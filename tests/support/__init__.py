"""Helpers shared by test suites (and the benchmarks): no fixtures here, each suite keeps its own."""
