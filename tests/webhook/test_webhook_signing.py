"""Pure tests of relay.core.signing (no I/O), cross-checked against the standardwebhooks package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.core.redact import redact_url
from relay.core.signing import SignatureError, SigningKey, decode_secret, sign, sign_headers, verify
from relay.sinks.webhook import outcome_class

keys = st.binary(min_size=24, max_size=64)
ids = st.text(alphabet="abcdef0123456789-_", min_size=1, max_size=40)
bodies = st.text(max_size=200).map(str.encode)
stamps = st.integers(min_value=0, max_value=4_000_000_000)


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@given(keys, ids, stamps, bodies)
def test_signature_matches_standardwebhooks(key: bytes, msg_id: str, ts: int, body: bytes) -> None:
    ours = sign(decode_secret(secret_of(key)), msg_id, ts, body)
    theirs = Webhook(secret_of(key)).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
    assert ours == theirs


@given(st.lists(keys, min_size=1, max_size=3), ids, bodies)
def test_each_rotated_secret_alone_verifies(
    key_list: list[bytes], msg_id: str, body: bytes
) -> None:
    now = int(datetime.now(UTC).timestamp())
    signing = [decode_secret(secret_of(k)) for k in key_list]
    headers = sign_headers(signing, msg_id, now, body)
    assert len(headers["webhook-signature"].split(" ")) == len(key_list)
    for key in key_list:
        Webhook(secret_of(key)).verify(body, headers, json_parse=False)
        assert verify(SigningKey(key), headers, body, now=now) == msg_id


def test_other_secret_tampered_body_or_stale_time_fail() -> None:
    key = decode_secret(secret_of(b"k" * 32))
    now = 1_700_000_000
    headers = sign_headers([key], "evt-1", now, b'{"a":1}')
    assert verify(key, headers, b'{"a":1}', now=now + 10) == "evt-1"
    with pytest.raises(SignatureError, match="no matching"):
        verify(key, headers, b'{"a":2}', now=now)
    with pytest.raises(SignatureError, match="no matching"):
        verify(decode_secret(secret_of(b"x" * 32)), headers, b'{"a":1}', now=now)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(key, headers, b'{"a":1}', now=now + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify(key, {"webhook-id": "evt-1"}, b"", now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_of(b"x" * 32)).verify(b'{"a":1}', headers)


def test_headers_are_case_insensitive_for_verify() -> None:
    key = decode_secret(secret_of(b"q" * 32))
    headers = {k.upper(): v for k, v in sign_headers([key], "id", 5, b"x").items()}
    assert verify(key, headers, b"x", now=5) == "id"


@pytest.mark.parametrize(
    ("secret", "message"),
    [("abc", "must start with"), ("whsec_!!!", "base64"), ("whsec_", "empty")],
)
def test_malformed_secrets(secret: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as info:
        decode_secret(secret)
    assert secret.removeprefix("whsec_") not in str(info.value) or not secret.removeprefix("whsec_")


def test_key_repr_hides_the_key() -> None:
    key = decode_secret(secret_of(b"supersecretkey-0123456789"))
    assert "supersecret" not in repr(key)
    assert repr(key) == "SigningKey(***)"


def test_no_keys_is_an_error() -> None:
    with pytest.raises(SignatureError):
        sign_headers([], "id", 1, b"")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@hooks.example.com:8443/in?token=s3cret#x",
            "https://hooks.example.com:8443/in",
        ),
        ("http://10.0.0.1", "http://10.0.0.1/"),
        ("https://[::1]:9000/a/b?q=1", "https://[::1]:9000/a/b"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("status", "label"), [(200, "2xx"), (204, "2xx"), (302, "3xx"), (410, "4xx"), (503, "5xx")]
)
def test_outcome_class(status: int, label: str) -> None:
    assert outcome_class(status) == label
