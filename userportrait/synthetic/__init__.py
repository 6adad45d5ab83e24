"""Synthetic data: ``generate.py`` writes realistic visit events and profiles (for tests,
the benchmarks and ``userportrait generate``); ``demo.py`` fills a demo data directory
from it (``userportrait demo``)."""
