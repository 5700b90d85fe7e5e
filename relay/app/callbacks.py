"""Wiring of the callback receiver: the ``api = "api2"`` tenants and ``[callback]`` become
a :class:`relay.gateway.callback.CallbackReceiver` on the ``[http]`` server.

Every enabled api2 tenant of the configuration gets its URL on every replica, whatever
the sharding: a callback is journaled by whichever replica receives it (docs/leases.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from relay.app.settings import Settings
from relay.core.events import Event
from relay.core.wecom_crypto import WeComCrypto
from relay.gateway.callback import CallbackReceiver, CallbackTenant
from relay.journal import Journal
from relay.runtime.callback_status import CallbackBoard
from relay.runtime.observer import Observer

__all__ = ["callback_board", "callback_receiver"]


def callback_board(settings: Settings, observer: Observer) -> CallbackBoard:
    """The status tallies of the enabled api2 tenants, in front of ``observer``: the
    receiver reports to it, the supervisor shows its tallies (every replica receives
    every api2 tenant's callbacks, so every replica lists them all)."""
    names = [t.name for t in settings.tenants if t.api == "api2" and t.enabled]
    return CallbackBoard(observer, names)


def callback_receiver(
    settings: Settings,
    journal: Journal,
    route: Callable[[Event], Sequence[str]],
    observer: Observer,
) -> CallbackReceiver | None:
    """The receiver for the enabled api2 tenants; None when there is none."""
    tenants: dict[str, CallbackTenant] = {}
    for tenant in settings.tenants:
        if tenant.api != "api2" or not tenant.enabled:
            continue
        token, key, corpid = tenant.callback_token, tenant.encoding_aes_key, tenant.corpid
        assert token is not None and key is not None and corpid is not None  # validated
        crypto = WeComCrypto.create(
            token=token.get_secret_value(),
            encoding_aes_key=key.get_secret_value(),
            corpid=corpid,
        )
        tenants[tenant.name] = CallbackTenant(tenant.name, crypto)
    if not tenants:
        return None
    c = settings.callback
    return CallbackReceiver(
        tenants=tenants,
        journal=journal,
        route=route,
        observer=observer,
        max_body_bytes=c.max_body_bytes,
        max_age=c.max_age,
        body_timeout=c.body_timeout,
    )
