"""Faults that live in a module of their own (one concept each), registered in bench.nemesis."""
