"""Fixtures for the runtime tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def unhandled() -> AsyncIterator[list[dict[str, Any]]]:
    """Every exception the event loop reports as unhandled ("Task exception was never
    retrieved", a failing callback) during the test."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)
