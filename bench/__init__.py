"""Benchmarks of SARD's sampling and training speed; ``python -m bench`` runs them all (see README.md here)."""
