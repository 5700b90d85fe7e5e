"""The admin API's pure part: filters from a query or a body, limits, replica ids and
paging cursors (no I/O); and its token setting."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from relay.app.settings import HttpSettings
from relay.gateway.problems import Problem
from relay.journal import DeadFilter
from relay.ops.admin_query import (
    START,
    decode_cursor,
    encode_cursor,
    parse_filter,
    parse_limit,
    parse_replica,
)


def test_a_filter_from_a_query_or_a_body() -> None:
    assert parse_filter({}) == DeadFilter()
    assert parse_filter({"endpoint": "crm", "tenant": "acme", "type": "t"}) == DeadFilter(
        sink="webhook:crm", tenant="acme", type="t"
    )
    assert parse_filter({"endpoint": "webhook:crm"}).sink == "webhook:crm"
    got = parse_filter({"since": "2027-01-15T08:00:00", "until": 1_800_000_060})
    assert (got.since, got.until) == (1_800_000_000, 1_800_000_060)
    assert parse_filter({"since": "2027-01-15T10:00:00+02:00"}).since == 1_800_000_000
    assert parse_filter({"since": "1800000000.5"}).since == 1_800_000_000.5


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sink": "amqp", "endpoint": "crm"}, "endpoint"),
        ({"endpoint": "webhook:"}, "endpoint"),
        ({"tenant": "  "}, "tenant"),
        ({"tenant": 5}, "tenant"),
        ({"type": "x" * 513}, "type"),
        ({"since": "yesterday"}, "since"),
        ({"since": True}, "since"),
        ({"since": 10, "until": 10}, "until"),
        # NaN binds as NULL in SQLite, which the filter reads as "no bound": a drop
        # {"since": "nan"} would have dropped every dead letter.
        ({"since": "nan"}, "since"),
        ({"since": float("nan")}, "since"),
        ({"until": "inf"}, "until"),
        ({"since": 10**400}, "since"),
        ({"since": -1}, "since"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(Problem) as caught:
        parse_filter(values)
    assert caught.value.status == 400 and caught.value.detail.startswith(field + ":")


def test_limits_and_replica_ids() -> None:
    assert parse_limit(None) == 100 and parse_limit("1000") == 1000
    for bad in ("0", "1001", "ten"):
        with pytest.raises(Problem):
            parse_limit(bad)
    assert parse_replica(None) is None and parse_replica("exmail-relay-1") == "exmail-relay-1"
    for bad in ("Evil", "a.b", "x/y", "-a", "a" * 64, 7):
        with pytest.raises(Problem):
            parse_replica(bad)


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    cursor = {"10": (41, "webhook:crm"), "11": START}
    text = encode_cursor(cursor)
    assert text is not None and "=" not in text
    assert decode_cursor(text) == cursor
    assert encode_cursor({}) is None and decode_cursor(None) is None

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    forged = [
        "%%%",
        b64("not json"),
        b64("[1]"),  # not an object
        b64('{"Evil": [1, "a"]}'),  # not a replica id
        b64('{"10": [true, "a"]}'),
        b64('{"10": [9223372036854775808, "a"]}'),  # past SQLite's INTEGER
        b64('{"10": [-2, "a"]}'),
        b64('{"10": [1]}'),
        b64('{"10": [1, 2]}'),
    ]
    for text in forged:
        with pytest.raises(Problem):
            decode_cursor(text)


def test_the_admin_token_is_a_secret_of_at_least_16_characters(tmp_path: Path) -> None:
    assert HttpSettings().admin_token is None
    with pytest.raises(ValueError, match="at least 16 characters"):
        HttpSettings(admin_token="short")
    held = tmp_path / "admin-token"
    held.write_text("from-a-mounted-secret-01\n")
    settings = HttpSettings(admin_token_file=held)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-a-mounted-secret-01"
    assert "from-a-mounted" not in repr(settings)
