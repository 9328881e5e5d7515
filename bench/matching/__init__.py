"""Matching benchmarks: EDF participant recall (``python -m bench.matching``) and scale (``.scale``)."""
