"""The tolerant JSON reader: what it accepts beyond strict JSON, and how it recovers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.exmail._json import (
    MAX_DEPTH,
    Fault,
    JSONSyntaxError,
    iter_values,
    key_form,
    loads,
    normalize_keys,
)


def test_trailing_commas_in_objects_and_arrays() -> None:
    assert loads('{"Ver": "1",}') == {"Ver": "1"}
    assert loads('{"List": [1, 2,],}') == {"List": [1, 2]}


def test_typographic_quotes_delimit_strings() -> None:
    assert loads('{ "Email": " a@b.com ", “Type”: 1 }') == {"Email": " a@b.com ", "Type": 1}


def test_raw_line_breaks_inside_strings() -> None:
    assert loads('{"AuthKey": "AB\n CD"}') == {"AuthKey": "AB\n CD"}


def test_escapes_and_unicode() -> None:
    assert loads(r'{"s": "\"Test\" <t@x.com>\u4e2d\/"}') == {"s": '"Test" <t@x.com>中/'}


def test_numbers_and_literals() -> None:
    assert loads("[0, -12, 1.5, 2e3, true, false, null]") == [
        0,
        -12,
        1.5,
        2000.0,
        True,
        False,
        None,
    ]


def test_bytes_with_bom() -> None:
    assert loads(b'\xef\xbb\xbf{"Ret": 0}') == {"Ret": 0}


@pytest.mark.parametrize("text", ['{"a": }', '{"a" 1}', "[1 2]", '{"a": "x', "", "nul", "{} {}"])
def test_loads_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(JSONSyntaxError):
        loads(text)


def test_nesting_is_capped() -> None:
    with pytest.raises(JSONSyntaxError, match="too deep"):
        loads("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))


def test_iter_values_reads_every_framing() -> None:
    text = '{"a": 1}{"b": 2}\n{"c": 3},{"d": 4} [5]'
    assert list(iter_values(text)) == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}, [5]]


def test_iter_values_recovers_after_garbage() -> None:
    values = list(iter_values('{"Ret": 0} oops {"Ver": ] } {"Ver": 2}'))
    assert values[0] == {"Ret": 0}
    assert values[-1] == {"Ver": 2}
    faults = [v for v in values if isinstance(v, Fault)]
    assert len(faults) == 2
    assert faults[0].text.startswith("oops")


def test_key_form_ignores_case_spaces_and_underscores() -> None:
    assert {key_form(k) for k in ("NewCount ", " newcount", "new_count", "NEW COUNT")} == {
        "newcount"
    }
    assert normalize_keys({"AuthKey": 1, "auth_key": 2}) == {"authkey": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_loads_agrees_with_json_on_strict_json(value: object) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value, ensure_ascii=False, indent=2)) == value


@given(st.text())
def test_iter_values_never_raises(text: str) -> None:
    for value in iter_values(text):
        assert value is not None or value is None  # consumed without raising
