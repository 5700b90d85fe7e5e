"""The second API's pure pieces, no I/O: the envelope, the errcode mapping, the tolerant
models (64-bit ids exact, numbers as strings, the doc's typos) and the request checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from relay.exmail import (
    AccountType,
    ApiError,
    Conflict,
    Gender,
    HTTPStatusError,
    InvalidCredentials,
    InvalidRequest,
    InvalidToken,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    TemporarilyUnavailable,
    is_transient,
)
from relay.exmail2 import (
    OPERATIONS,
    App,
    CheckEntry,
    Department,
    Member,
    MemberBrief,
    TagChange,
    app_of,
    decode_answer,
    decode_token,
    errcode_of,
)
from relay.exmail2 import _requests as r
from relay.exmail2._calls import models

BIG = 4913577855806636138  # NIN's test id, above 2**53
BANG = 5196969938080910636  # the id BANG's JS client rounded to ...0910000


def answer(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# -- the envelope -----------------------------------------------------------------------


def test_errcode_zero_is_success_whatever_errmsg_says() -> None:
    for errmsg in ("ok", "created", "updated", "deleted", "update", "anything"):
        value = decode_answer("x", 200, answer({"errcode": 0, "errmsg": errmsg, "id": 2}))
        assert value["id"] == 2


def test_errcode_may_be_a_numeric_string() -> None:
    assert decode_answer("x", 200, answer({"errcode": "0", "errmsg": "ok"}))["errmsg"] == "ok"
    with pytest.raises(NotFound) as caught:
        decode_answer("user/get", 200, answer({"errcode": "60111", "errmsg": "no user"}))
    assert caught.value.errcode == "60111"
    assert caught.value.error == "no user"
    assert str(caught.value) == "user/get: errcode 60111 no user"
    assert errcode_of(" -1 ") == -1
    assert errcode_of(True) is None
    assert errcode_of("4x") is None


def test_unreadable_errcode_and_non_objects_are_malformed() -> None:
    with pytest.raises(MalformedResponse, match="errcode is not an integer"):
        decode_answer("x", 200, answer({"errcode": "oops", "errmsg": ""}))
    for body in (b"", b"[1, 2]", b"{", b'"ok"'):
        with pytest.raises(MalformedResponse):
            decode_answer("x", 200, body)


def test_an_object_without_errcode_is_a_success() -> None:
    # The doc's gettoken example carries no errcode/errmsg.
    token, lifetime = decode_token(200, answer({"access_token": "abc", "expires_in": 7200}))
    assert token.get_secret_value() == "abc"
    assert lifetime == 7200.0


def test_the_tolerant_reader_takes_the_docs_typos_and_keeps_ids_exact() -> None:
    body = f'{{"errcode": 0, "errmsg": "ok", "department": [{{"id": {BIG}, "name": "a",}},],}}'
    value = decode_answer("department/list", 200, body.encode())
    assert value["department"][0]["id"] == BIG
    assert isinstance(value["department"][0]["id"], int)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-1, TemporarilyUnavailable),
        (45009, RateLimited),
        (40001, InvalidToken),
        (40014, InvalidToken),
        (42001, InvalidToken),
        (48002, PermissionDenied),
        (60011, PermissionDenied),
        (60003, NotFound),
        (60111, NotFound),
        (60005, Conflict),
        (60102, Conflict),
        (601002, ApiError),
        (99999, ApiError),
    ],
)
def test_codes_map_onto_the_one_tree(code: int, cls: type[ApiError]) -> None:
    with pytest.raises(ApiError) as caught:
        decode_answer("op", 200, answer({"errcode": code, "errmsg": "m"}))
    assert type(caught.value) is cls
    assert caught.value.errcode == str(code)


def test_transient_codes_are_transient_and_others_not() -> None:
    def error(code: int) -> ApiError:
        with pytest.raises(ApiError) as caught:
            decode_answer("op", 200, answer({"errcode": code, "errmsg": ""}))
        return caught.value

    assert is_transient(error(-1))
    assert is_transient(error(45009))
    assert not is_transient(error(60111))
    assert not is_transient(error(48002))


def test_gettoken_refusals_are_credentials_but_busy_stays_transient() -> None:
    with pytest.raises(InvalidCredentials):
        decode_token(200, answer({"errcode": 40001, "errmsg": "invalid credential"}))
    with pytest.raises(InvalidCredentials):
        decode_token(200, answer({"errcode": 40013, "errmsg": "invalid corpid"}))
    with pytest.raises(TemporarilyUnavailable):
        decode_token(200, answer({"errcode": -1, "errmsg": "busy"}))
    with pytest.raises(InvalidCredentials, match="no access_token"):
        decode_token(200, answer({"errcode": 0, "errmsg": "ok"}))


def test_non_2xx_prefers_an_error_object_to_the_status() -> None:
    with pytest.raises(InvalidToken):
        decode_answer("x", 401, answer({"errcode": 40014, "errmsg": "invalid access_token"}))
    with pytest.raises(HTTPStatusError) as caught:
        decode_answer("x", 502, b"<html>bad gateway</html>")
    assert caught.value.status == 502


# -- models ---------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_department_ids_round_trip_exactly(ident: int) -> None:
    body = answer({"errcode": 0, "errmsg": "ok", "department": [{"id": ident, "parentid": 1}]})
    value = decode_answer("department/list", 200, body)
    (department,) = models("department/list", value, "department", Department)
    assert department.id == ident
    text = answer({"errcode": 0, "department": [{"id": str(ident), "parentid": str(ident)}]})
    (again,) = models("d", decode_answer("d", 200, text), "department", Department)
    assert again.id == again.parentid == ident


def test_a_float_that_lost_an_id_is_refused() -> None:
    rounded = float(BANG)  # what a JS client would have sent back
    with pytest.raises(MalformedResponse, match=r"at 0\.id: .*inexact float"):
        models("department/list", {"department": [{"id": rounded}]}, "department", Department)
    assert Department.model_validate({"id": 12.0}).id == 12  # exact floats are fine


def test_member_fields_take_numbers_or_strings() -> None:
    doc = {
        "userid": " zhangsan@gzdev.com ",
        "name": "李四",
        "department": [1, str(BIG)],
        "position": "后台工程师",
        "mobile": 15913215421,
        "gender": "1",
        "enable": "1",
        "extid": "01",
        "slaves": ["zhangsan@gz.com"],
        "cpwd_login": 0,
    }
    member = Member.model_validate(doc)
    assert member.userid == "zhangsan@gzdev.com"
    assert member.department == (1, BIG)
    assert member.gender is Gender.MALE
    assert member.enable == 1
    assert member.extid == "01"
    assert member.mobile == "15913215421"
    assert Member.model_validate({**doc, "enable": 0, "gender": 2}).gender is Gender.FEMALE


def test_simplelist_reads_the_docs_t_spelling() -> None:
    brief = MemberBrief.model_validate({"userid": "a@b.com", "name": "A", "t": [1, 2]})
    assert brief.department == (1, 2)


def test_tag_answers_split_the_pipe_joined_invalid_list() -> None:
    change = TagChange.model_validate({"invalidlist": "a@x.com|b@x.com", "invalidparty": [2, 4]})
    assert change.invalidlist == ("a@x.com", "b@x.com")
    assert change.invalidparty == (2, 4)
    assert TagChange.model_validate({}).invalidlist == ()


def test_batchcheck_types() -> None:
    entries = [CheckEntry.model_validate({"user": "x", "type": t}) for t in (-1, 0, "1", 2, 3)]
    assert [e.type for e in entries] == list(AccountType)


# -- the operation table and request checks -------------------------------------------------


def test_every_operation_has_one_app_and_the_notes_methods() -> None:
    assert app_of("/department/list/") is App.DIRECTORY
    assert app_of("service/get_login_url") is App.SSO
    assert app_of("mail/newcount") is App.NEWMAIL
    assert app_of("log/mail") is App.LOGS
    assert app_of("useroption/update") is App.SETTINGS
    assert app_of("listen") is None
    gets = {name for name, op in OPERATIONS.items() if op.method == "GET"}
    assert all(n.endswith(("/delete", "/get", "/list", "simplelist")) for n in gets - {
        "service/get_login_url", "mail/newcount"})  # fmt: skip
    assert not any(op.read for n, op in OPERATIONS.items() if n.endswith(("create", "update")))
    assert len(OPERATIONS) == 32


def test_department_requests() -> None:
    assert r.department_body(name="研发", parentid=BIG, order=5) == {
        "name": "研发",
        "parentid": BIG,
        "order": 5,
    }
    assert r.department_body(id=BIG, name=None) == {"id": BIG}
    for bad_name in ("", "a" * 65, "a/b:c", 'x"y', "   ", "中" * 22):
        with pytest.raises(InvalidRequest):
            r.department_body(name=bad_name, parentid=1)
    for bad_id in (0, -1, 2**64, True, 1.0, "5"):
        with pytest.raises(InvalidRequest, match="64-bit"):
            r.department_body(name="a", parentid=bad_id)


def test_member_requests() -> None:
    body = r.member_body(
        "a@b.com",
        create=True,
        name="A",
        department=[BIG],
        password=SecretStr("Passw0rd"),
        gender=2,
        cpwd_login=True,
        slaves=["x@b.com"],
    )
    assert body == {
        "userid": "a@b.com",
        "name": "A",
        "department": [BIG],
        "password": "Passw0rd",
        "gender": "2",
        "slaves": ["x@b.com"],
        "cpwd_login": 1,
    }
    assert r.member_body("a@b.com", create=False, enable=False) == {
        "userid": "a@b.com",
        "enable": 0,
    }
    with pytest.raises(InvalidRequest, match="needs password"):
        r.member_body("a@b.com", create=True, name="A", department=[1])
    with pytest.raises(InvalidRequest, match="at most 20"):
        r.member_body("a@b.com", create=False, department=list(range(1, 22)))
    with pytest.raises(InvalidRequest, match="at most 5"):
        r.member_body("a@b.com", create=False, slaves=[f"s{i}@b.com" for i in range(6)])
    with pytest.raises(InvalidRequest, match="gender"):
        r.member_body("a@b.com", create=False, gender=0)
    with pytest.raises(InvalidRequest, match="userid"):
        r.member_body("not-an-address", create=False)
    with pytest.raises(InvalidRequest) as caught:
        r.member_body("a@b.com", create=True, name="A", department=[1], password="")
    assert "Passw0rd" not in str(caught.value)


def test_group_tag_log_and_option_requests() -> None:
    with pytest.raises(InvalidRequest, match="needs members"):
        r.group_body("g@b.com", create=True, groupname="G", allow_type=0)
    with pytest.raises(InvalidRequest, match="allow_type"):
        r.group_body("g@b.com", create=False, allow_type=4)  # the doc example's typo
    assert r.tag_members_body(3, ["a@b.com"], [BIG]) == {
        "tagid": 3,
        "userlist": ["a@b.com"],
        "partylist": [BIG],
    }
    with pytest.raises(InvalidRequest, match="both be empty"):
        r.tag_members_body(3, [], [])
    with pytest.raises(InvalidRequest, match="tagname"):
        r.tag_name("x" * 33)
    assert r.date_range(dt.date(2024, 1, 2), "2024-02-03") == {
        "begin_date": "2024-01-02",
        "end_date": "2024-02-03",
    }
    with pytest.raises(InvalidRequest, match="after"):
        r.date_range("2024-02-03", "2024-01-02")
    with pytest.raises(InvalidRequest, match="YYYY-MM-DD"):
        r.date_range("2024/01/02", "2024-01-03")
    assert r.options_body("a@b.com", {1: True, 2: "0", 3: 1})["option"] == [
        {"type": 1, "value": "1"},
        {"type": 2, "value": "0"},
        {"type": 3, "value": "1"},
    ]
    with pytest.raises(InvalidRequest, match="option type"):
        r.options_body("a@b.com", {4: "1"})  # read-only
    with pytest.raises(InvalidRequest):
        r.option_types([5])
