"""The pure signing of broker messages (relay.core.envelope): no I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.core.envelope import Refused, sign, verify

SECRET = b"s" * 32
OTHER = b"o" * 32


def test_a_signed_body_verifies_and_gives_its_send_time() -> None:
    header = sign("presence", b'{"a":1}', secret=SECRET, at_ms=1_700_000_000_000)
    assert verify("presence", b'{"a":1}', header, secrets=[SECRET]) == 1_700_000_000_000


def test_refusals_name_their_reason() -> None:
    header = sign("presence", b"body", secret=SECRET, at_ms=5)
    assert verify("presence", b"body", None, secrets=[SECRET]) == Refused("unsigned")
    assert verify("presence", b"body", 42, secrets=[SECRET]) == Refused("malformed")
    assert verify("presence", b"body", "v1,5,zz", secrets=[SECRET]) == Refused("malformed")
    assert verify("presence", b"body", b"\xff", secrets=[SECRET]) == Refused("malformed")
    assert verify("presence", b"body", header, secrets=[OTHER]) == Refused("bad signature")
    assert verify("presence", b"body", header, secrets=[]) == Refused("bad signature")
    # Another kind, another body or another time: the same MAC does not carry over.
    assert verify("checkpoint", b"body", header, secrets=[SECRET]) == Refused("bad signature")
    assert verify("presence", b"bodY", header, secrets=[SECRET]) == Refused("bad signature")
    moved = header.replace("v1,5,", "v1,6,")
    assert verify("presence", b"body", moved, secrets=[SECRET]) == Refused("bad signature")


def test_bytes_headers_are_accepted_as_aiormq_may_give_them() -> None:
    header = sign("checkpoint", b"x", secret=SECRET, at_ms=9)
    assert verify("checkpoint", b"x", header.encode(), secrets=[SECRET]) == 9


def test_any_of_the_rotated_secrets_verifies() -> None:
    header = sign("presence", b"x", secret=OTHER, at_ms=1)
    assert verify("presence", b"x", header, secrets=[SECRET, OTHER]) == 1


def test_max_age_refuses_old_and_future_messages() -> None:
    header = sign("presence", b"x", secret=SECRET, at_ms=10_000)
    ok = verify("presence", b"x", header, secrets=[SECRET], now_ms=14_000, max_age_ms=5_000)
    assert ok == 10_000
    late = verify("presence", b"x", header, secrets=[SECRET], now_ms=16_000, max_age_ms=5_000)
    assert late == Refused("stale")
    early = verify("presence", b"x", header, secrets=[SECRET], now_ms=4_000, max_age_ms=5_000)
    assert early == Refused("stale")


@given(body=st.binary(max_size=200), kind=st.sampled_from(["presence", "checkpoint"]))
def test_any_body_round_trips_and_any_flipped_byte_is_refused(body: bytes, kind: str) -> None:
    header = sign(kind, body, secret=SECRET, at_ms=123)
    assert verify(kind, body, header, secrets=[SECRET]) == 123
    tampered = body + b"!"
    assert verify(kind, tampered, header, secrets=[SECRET]) == Refused("bad signature")
