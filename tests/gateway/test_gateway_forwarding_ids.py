"""A forwarded call goes only to a URL built from a valid id: the owner's id fills the
``{replica}`` (or ``{index}``) of ``peer_url`` only when it is a DNS label, so no id can
add a host, a port, a path or a fragment."""

from __future__ import annotations

import aiohttp
import pytest

from relay.gateway.forwarding import Forwarder


@pytest.mark.parametrize(
    "owner",
    ["127.0.0.1:9/#", "evil.example.com", "relay-0@evil", "relay-0/..", "Relay-0", "", "a" * 64],
)
async def test_an_id_that_is_not_a_dns_label_builds_no_url(owner: str) -> None:
    async with aiohttp.ClientSession() as session:
        forwarder = Forwarder(session, "http://{replica}.relay-headless.mail.svc:8080", "me")
        with pytest.raises(ValueError, match="DNS label"):
            forwarder.url(owner, "/v1/tenants/acme/users/x")


async def test_a_valid_id_fills_the_template() -> None:
    async with aiohttp.ClientSession() as session:
        lease = Forwarder(session, "http://{replica}.relay-headless.mail.svc:8080/", "me")
        assert lease.url("relay-exmail-relay-2", "/v1/t?q=1") == (
            "http://relay-exmail-relay-2.relay-headless.mail.svc:8080/v1/t?q=1"
        )
        static = Forwarder(session, "http://relay-{index}.relay-headless:8080", "0")
        assert static.url("3", "/v1/t") == "http://relay-3.relay-headless:8080/v1/t"
