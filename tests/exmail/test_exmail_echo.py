"""An answer that echoes our own secret or token back never carries it any further."""

from __future__ import annotations

import pytest

from relay.exmail import ApiError, ExmailClient, InvalidCredentials
from relay.exmail._decode import MIN_MASKED, without_secrets
from tests.exmail.conftest import KEY, Control


def test_without_secrets_masks_only_our_own_long_enough_secrets() -> None:
    body = b'{"error": "bad key exmail-demo-key for token T0K3N-abcdef"}'
    masked = without_secrets(body, KEY, "T0K3N-abcdef", "a")
    assert masked == b'{"error": "bad key *** for token ***"}'
    assert without_secrets(b"abc", "a" * (MIN_MASKED - 1)) == b"abc"


async def test_an_api_error_echoing_the_secret_and_token_is_masked(
    client: ExmailClient, control: Control
) -> None:
    token = await client.token()
    await control.fault(
        "api_error", 1, path="/openapi/user/get", errcode="1001", error=f"echo {KEY} {token}"
    )
    with pytest.raises(ApiError) as caught:
        await client.user_get("bob@example.com")
    text = f"{caught.value} {caught.value!r} {vars(caught.value)}"
    assert KEY not in text and token not in text
    assert "echo *** ***" in text


async def test_a_token_refusal_echoing_the_secret_is_masked(
    client: ExmailClient, control: Control
) -> None:
    await control.fault(
        "api_error", 1, path="/cgi-bin/token", errcode="1101", error=f"invalid {KEY}"
    )
    with pytest.raises(InvalidCredentials) as caught:
        await client.token()
    assert KEY not in f"{caught.value} {vars(caught.value)}"
