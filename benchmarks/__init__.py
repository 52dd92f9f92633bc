"""Benchmarks: run.py compares refserver with its peers; apps/ holds the served apps."""
