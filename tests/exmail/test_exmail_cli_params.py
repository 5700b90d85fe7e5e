"""``exmail-relay api`` parameters: ``key=value`` strings, ``key:=JSON`` typed values (the
second API's bodies are typed JSON), repeated keys as lists. Pure: no I/O."""

from __future__ import annotations

import pytest

from relay.cli.api import _form_values, parse_params
from relay.cli.errors import CommandError


def test_plain_values_are_strings_and_a_repeated_key_is_a_list() -> None:
    assert parse_params(["alias=a@x.com", "email=b@x.com", "email=c@x.com", "email=d@x.com"]) == {
        "alias": "a@x.com",
        "email": ["b@x.com", "c@x.com", "d@x.com"],
    }


def test_typed_values_keep_their_json_type() -> None:
    params = parse_params(["id:=1", "enable:=true", 'userlist:=["a@x.com", "b@x.com"]', "n:=null"])
    assert params == {"id": 1, "enable": True, "userlist": ["a@x.com", "b@x.com"], "n": None}
    # A department id past 2**53 stays exact.
    assert parse_params(["department_id:=4913577855806636138"]) == {
        "department_id": 4913577855806636138
    }


def test_a_value_with_an_equals_sign_and_a_repeated_typed_key() -> None:
    assert parse_params(["q=a=b", "id:=1", "id:=2"]) == {"q": "a=b", "id": [1, 2]}


@pytest.mark.parametrize("pair", ["noequals", "=x", ":=1", "id:=not-json", "id:={"])
def test_bad_pairs_are_usage_errors(pair: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_params([pair])
    assert caught.value.exit_code == 2


def test_form_values_for_the_first_api_are_text() -> None:
    assert _form_values({"a": "x", "b": 1, "c": [1, "y"], "d": True}) == {
        "a": "x",
        "b": "1",
        "c": ["1", "y"],
        "d": "true",
    }
