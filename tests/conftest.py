"""Fixtures every test package may use."""

from tests.arcadedb import arcadedb

__all__ = ["arcadedb"]
