"""Benchmarks of the portal and the engine at scale: ``make bench`` runs :mod:`bench.run`."""
