"""Fixtures of the journal tests: the loopback webhook receiver of the webhook tests."""

from tests.webhook.conftest import receiver

__all__ = ["receiver"]
