"""Response models on every JSON example of both protocol texts, and on real-world typos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from relay.exmail import (
    AccountType,
    Gender,
    KeepAlive,
    NewMail,
    UnreadCount,
    UserAction,
    VersionUpdate,
    parse_listen,
)
from relay.exmail._json import loads
from relay.exmail._models import (
    AuthKeyResponse,
    CheckResponse,
    NewCount,
    TokenResponse,
    User,
    UserList,
    ValueList,
)

FIXTURES = Path(__file__).parent / "fixtures"
AUTHKEY = (
    "077FFF01B4D6A28A07A21682C3C0D4FE04221261CE2E3FAFA9E8432937DCF57290EA36BAD"
    "05815167251FF690134EDE4F40055B1B7B68C1D"
)
MODELS: dict[str, type[BaseModel]] = {
    "token": TokenResponse,
    "mail_authkey": AuthKeyResponse,
    "user_get": User,
    "user_list": UserList,
    "mail_newcount": NewCount,
    "party_sync": ValueList,
    "party_list": ValueList,
    "partyuser_list": ValueList,
    "user_check": CheckResponse,
}
LISTEN = {
    "listen_keepalive": KeepAlive(0),
    "listen_version": VersionUpdate(1364460338051),
    "listen_unread": UnreadCount("bob@gzdev.com", 550),
}


def _examples() -> list[Path]:
    return sorted(FIXTURES.glob("*--*.json"))


def test_every_documented_example_is_covered() -> None:
    names = {p.name.split("--")[1].removesuffix(".json") for p in _examples()}
    assert names == set(MODELS) | set(LISTEN) | {"listen_newmail"}
    assert {p.name.split("--")[0] for p in _examples()} == {"authority", "v1.4"}


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_documented_example_parses(path: Path) -> None:
    kind = path.name.split("--")[1].removesuffix(".json")
    text = path.read_text(encoding="utf-8")
    if kind.startswith("listen_"):
        [message] = parse_listen(text)
        if kind == "listen_newmail":
            assert isinstance(message, NewMail)
            assert message.mail_id == "ZC4028-FPiX_oOG5HUh4XorwyhAY33"
            assert message.sender == '"Test" <test@gzdev.com>'
            assert message.summary == "TestMail Content"
            assert message.new_count == 549
        else:
            assert message == LISTEN[kind]
        return
    model: Any = MODELS[kind].model_validate(loads(text))
    checks = {
        "token": lambda m: (
            m.access_token.get_secret_value().startswith("GHUSH-")
            and m.expires_in == 86400
            and "GHUSH" not in repr(m)
        ),
        "mail_authkey": lambda m: m.auth_key == AUTHKEY,
        "user_get": lambda m: (
            m.alias == "test2@gzservice.com"
            and m.gender is Gender.MALE
            and m.slave_list == ("bb@gzdev.com", "bo@gzdev.com")
            and m.parties == ("部门 a", "部门 B/部门 b", "部门 c")
        ),
        "user_list": lambda m: (
            m.ver == 1346674693912
            and [(e.alias, e.code, e.action) for e in m.entries]
            == [("test2@gzservice.com", 3, UserAction.DELETED)]
        ),
        "mail_newcount": lambda m: (m.alias, m.new_count) == ("test0507@gzservice.com", 15),
        "party_sync": lambda m: m.values == ("部门 a", "部门 B", "部门 c"),
        "party_list": lambda m: m.values == ("部门 a", "部门 B", "部门 c"),
        "partyuser_list": lambda m: m.values == ("bob@gzdev.com",),
        "user_check": lambda m: (
            [(e.email, e.type) for e in m.entries]
            == [("test@gzdev.com", AccountType.PRIMARY), ("2013@gzdev.com", AccountType.FREE)]
        ),
    }
    assert checks[kind](model), model


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ("authority", [UserAction.ADDED, UserAction.UPDATED, UserAction.DELETED]),
        ("v1.4", [UserAction.DELETED, UserAction.ADDED, UserAction.UPDATED]),
    ],
)
def test_user_list_action_code_mapping(codes: str, expected: list[UserAction]) -> None:
    body = {"Ver": "7", "List": [{"Action": c, "Alias": f"u{c}@x.com"} for c in (1, "2", " 3 ")]}
    result = UserList.model_validate(body, context={"action_codes": codes})
    assert [e.action for e in result.entries] == expected
    assert [e.code for e in result.entries] == [1, 2, 3]


def test_unmapped_action_code_is_unknown_not_fatal() -> None:
    result = UserList.model_validate({"Ver": 1, "List": [{"Action": 9, "Alias": "a@x.com"}]})
    assert result.entries[0].action is UserAction.UNKNOWN


@pytest.mark.parametrize(
    "body",
    [
        {"NewCount": "2", "Alias": "a@x.com"},
        {"newcount ": 2, "alias": " a@x.com "},
        {" NEW_COUNT": 2.0, "ALIAS": "a@x.com", "Extra": {"ignored": True}},
    ],
)
def test_newcount_tolerates_spelling_and_types(body: dict[str, Any]) -> None:
    assert NewCount.model_validate(body) == NewCount(alias="a@x.com", new_count=2)


@pytest.mark.parametrize("key", ["AuthKey", "authkey", "auth_key", "Auth_Key "])
def test_authkey_spellings(key: str) -> None:
    assert AuthKeyResponse.model_validate({key: " K1 "}).auth_key == "K1"


def test_user_numbers_as_strings_and_strings_as_numbers() -> None:
    user = User.model_validate({"Alias": "a@x.com", "Gender": "2", "ExtId": 100, "OpenType": "1"})
    assert (user.gender, user.ext_id, user.open_type) == (Gender.FEMALE, "100", 1)
    assert user.slave_list == ()
