"""Fixtures for the pipeline tests; the helpers live in ``tests/pipeline/support.py``."""

from tests.pipeline.support import broker, emulator

__all__ = ["broker", "emulator"]
