"""Benchmark scripts; a package so that the suite (``run_all``) can reuse their functions."""
