"""Shared library of Kueue for Python: configuration, authentication, paths and
the generated gRPC stubs (kueue.v1)."""

__version__ = "0.1.0"
