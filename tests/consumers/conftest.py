"""Fixtures for the consumer tests; the helpers live in ``tests/consumers/support.py``."""

from tests.pipeline.support import broker, emulator

__all__ = ["broker", "emulator"]
