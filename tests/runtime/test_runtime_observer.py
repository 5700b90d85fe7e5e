"""The forwarding observers pass on every report of the seam: a method added to
:class:`Observer` or :class:`TenantObserver` and forgotten in the forwarding bases fails
here, instead of going silently missing from the metrics of every wrapped observer (the
unread cache and the checkpoint stream both wrap the Prometheus one)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from relay.runtime.observer import (
    ForwardingObserver,
    ForwardingTenantObserver,
    Observer,
    TenantObserver,
)


def public_methods(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


class Recorder:
    """Records every call made on it, whatever the method."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: object, **kwargs: object) -> Recorder:
            self.calls.append(name)
            return self

        return record


def arguments(method: Any) -> list[object]:
    params = list(inspect.signature(method).parameters.values())[1:]
    return [object() for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]


def keywords(method: Any) -> dict[str, object]:
    params = list(inspect.signature(method).parameters.values())[1:]
    return {p.name: object() for p in params if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize(
    ("seam", "forwarding"),
    [(Observer, ForwardingObserver), (TenantObserver, ForwardingTenantObserver)],
)
def test_every_report_of_the_seam_is_forwarded(seam: type, forwarding: type) -> None:
    methods = public_methods(seam)
    assert methods, seam
    assert methods <= public_methods(forwarding), methods - public_methods(forwarding)
    for name in sorted(methods):
        inner = Recorder()
        wrapper = forwarding(inner)
        method = getattr(seam, name)
        getattr(wrapper, name)(*arguments(method), **keywords(method))
        assert inner.calls == [name], name
