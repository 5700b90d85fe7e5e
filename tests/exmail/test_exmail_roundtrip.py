"""Every operation, client ↔ emulator over loopback: results, validation, error codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from relay.emulator import Emulator
from relay.exmail import (
    AccountType,
    ApiError,
    ExmailClient,
    ExmailTimeout,
    Gender,
    InvalidCredentials,
    InvalidRequest,
    KeepAlive,
    NewMail,
    NotFound,
    OpenType,
    UnreadCount,
    UserAction,
    VersionUpdate,
)
from tests.exmail.conftest import ADMIN, KEY, Control


async def test_user_lifecycle_and_directory_versions(client: ExmailClient) -> None:
    start = await client.user_list(0)
    assert start.ver > 0
    assert {e.action for e in start.entries} == {UserAction.ADDED}
    assert "bob@example.com" in {e.alias for e in start.entries}

    await client.user_sync(
        2,
        "newbie@example.com",
        name="New Bie",
        gender=Gender.FEMALE,
        position="Tester",
        tel="123",
        mobile="456",
        ext_id="X1",
        password="S3cret-pass!",
        md5=False,
        party_paths=["Engineering/Platform", "Finance"],
        slaves=["nb@example.com"],
    )
    user = await client.user_get("newbie@example.com")
    assert (user.name, user.gender, user.position, user.ext_id) == (
        "New Bie",
        Gender.FEMALE,
        "Tester",
        "X1",
    )
    assert set(user.parties) == {"Engineering/Platform", "Finance"}
    assert user.slave_list == ("nb@example.com",)

    await client.user_sync(3, "newbie@example.com", name="Renamed", open_type=OpenType.DISABLED)
    user = await client.user_get("newbie@example.com")
    assert (user.name, user.open_type) == ("Renamed", OpenType.DISABLED)

    await client.user_sync(1, "newbie@example.com")
    with pytest.raises(NotFound):
        await client.user_get("newbie@example.com")

    changes = await client.user_list(start.ver)
    assert changes.ver > start.ver
    assert [e.alias for e in changes.entries] == ["newbie@example.com"]
    # Authority codes: the last change was a delete (3 = Del).
    assert changes.entries[-1].action is UserAction.DELETED


async def test_mail_counts_and_authkey(client: ExmailClient, control: Control) -> None:
    before = await client.mail_newcount("bob@example.com")
    await control.post("mail", {"to": "bob@example.com", "subject": "hello"})
    after = await client.mail_newcount("bob@example.com")
    assert (after.alias, after.new_count) == ("bob@example.com", before.new_count + 1)
    key = await client.mail_authkey("bob@example.com")
    assert key
    assert key.strip() == key


async def test_parties(client: ExmailClient) -> None:
    assert await client.party_list() == ["Engineering", "Finance", "Sales"]
    assert await client.party_list("Engineering") == ["Platform"]
    await client.party_sync(2, dst_path="Engineering/Platform/Infra")
    assert await client.party_list("Engineering/Platform") == ["Infra"]
    await client.party_sync(3, src_path="Engineering/Platform/Infra", dst_path="Finance/Infra")
    assert await client.party_list("Finance") == ["Infra"]
    await client.party_sync(1, dst_path="Finance/Infra")
    assert await client.party_list("Finance") == []
    assert "bob@example.com" in await client.partyuser_list("Engineering/Platform")
    assert set(await client.partyuser_list()) >= {"grace@example.com", "xuting@example.com"}
    with pytest.raises(NotFound) as caught:
        await client.party_list("Nowhere")
    assert caught.value.errcode == "1310"


async def test_user_check_splits_long_lists(client: ExmailClient, control: Control) -> None:
    emails = ["bob@example.com", "alice.alias@example.com", "all@example.com", "free@example.com"]
    emails += [f"nobody{i}@example.com" for i in range(21)]
    results = await client.user_check(emails)
    assert [r.email for r in results] == emails
    assert [r.type for r in results[:4]] == [
        AccountType.PRIMARY,
        AccountType.ALIAS,
        AccountType.GROUP,
        AccountType.FREE,
    ]
    assert await control.requests("/openapi/user/check") == 2


async def test_groups_and_allow_lists(client: ExmailClient, control: Control) -> None:
    await client.group_add("Team", "team@example.com", "list", ["bob@example.com"])
    [check] = await client.user_check(["team@example.com"])
    assert check.type is AccountType.GROUP
    await client.group_add_members("team@example.com", ["alice@example.com", "carol@example.com"])
    await client.group_delete_members("team@example.com", ["carol@example.com"])
    groups = {g["alias"]: g for g in (await control.state())["companies"][0]["groups"]}
    assert groups["team@example.com"]["members"] == 2
    await client.group_add_allow_list("team@example.com", ["alice@example.com", "bob@example.com"])
    await client.group_del_allow_list("team@example.com", ["bob@example.com"])
    with pytest.raises(ApiError):
        await client.group_add("Team", "team@example.com", "all", ["bob@example.com"])
    await client.group_delete("team@example.com")
    [check] = await client.user_check(["team@example.com"])
    assert check.type is AccountType.FREE


async def test_wechat_token_switches(client: ExmailClient, control: Control) -> None:
    await client.user_open_wx_token("bob@example.com")
    await client.user_close_wx_token("bob@example.com")
    assert await control.requests("/openapi/user/openwxtoken") == 1
    assert await control.requests("/openapi/user/closewxtoken") == 1
    with pytest.raises(NotFound):
        await client.user_open_wx_token("ghost@example.com")


async def test_listen_messages(client: ExmailClient, control: Control) -> None:
    ver = (await client.user_list(0)).ver
    assert await client.listen(ver, timeout=3.0) == [KeepAlive(0)]
    await control.post("mail", {"to": "bob@example.com", "subject": "Hi", "summary": "body"})
    messages = await client.listen(ver)
    mails = [m for m in messages if isinstance(m, NewMail)]
    assert [(m.user, m.subject) for m in mails] == [("bob@example.com", "Hi")]
    await control.post("read", {"user": "bob@example.com", "count": 1})
    messages = await client.listen(ver)
    assert any(isinstance(m, UnreadCount) and m.user == "bob@example.com" for m in messages)
    await control.post("user", {"action": "add", "alias": "late@example.com", "name": "Late"})
    messages = await client.listen(ver)
    [update] = [m for m in messages if isinstance(m, VersionUpdate)]
    assert update.ver > ver


async def test_listen_without_an_answer_by_the_deadline_is_a_timeout(
    emulator: Emulator, make_client: Callable[..., ExmailClient]
) -> None:
    outcomes: list[tuple[str, str]] = []
    client = make_client(on_request=lambda e, s, o: outcomes.append((e, o)))
    ver = (await client.user_list(0)).ver
    # The emulator answers an idle poll at its hold (0.5 s): silence until a 0.2 s
    # deadline is a stalled link, not a keep-alive.
    with pytest.raises(ExmailTimeout, match=r"listen: no answer within 0\.2 s"):
        await client.listen(ver, timeout=0.2)
    assert outcomes[-1] == ("listen", "timeout")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda c: c.user_sync(
                2, "x@example.com", slaves=[f"s{i}@example.com" for i in range(6)]
            ),
            "at most 5",
        ),
        (lambda c: c.user_sync(2, "x@example.com", party_paths=["a/b/c/d/e/f"]), "levels"),
        (lambda c: c.user_sync(2, "x@example.com", party_paths=["p" * 65]), "64"),
        (lambda c: c.user_sync(7, "x@example.com"), "Action"),
        (lambda c: c.user_get("not-an-email"), "Alias"),
        (lambda c: c.group_add("G", "g@example.com", "everyone", []), "status"),
        (lambda c: c.party_sync(3, dst_path="Finance"), "SrcPath"),
    ],
)
async def test_limits_are_checked_before_sending(
    client: ExmailClient, control: Control, call: Callable[[ExmailClient], object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await call(client)  # type: ignore[misc]
    state = await control.state()
    assert not any(path.startswith("/openapi/") for path in state["requests"])
    assert "/cgi-bin/token" not in state["requests"]


async def test_server_error_codes(client: ExmailClient) -> None:
    with pytest.raises(NotFound) as caught:
        await client.mail_newcount("ghost@example.com")
    assert caught.value.errcode in {"1400", "1401"} or caught.value.error == "user_not_found"
    with pytest.raises(NotFound):
        await client.user_sync(3, "ghost@example.com", name="X")
    with pytest.raises(ApiError) as exists:
        await client.user_sync(2, "bob@example.com", name="Bob", password="Passw0rd!x")
    assert exists.value.errcode == "1500"
    with pytest.raises(NotFound) as party:
        await client.user_sync(
            2, "n@example.com", name="N", password="Passw0rd!x", party_paths=["Nope"]
        )
    assert party.value.errcode == "1310"


@pytest.mark.parametrize("auth_method", ["form", "basic"])
async def test_both_token_methods(
    make_client: Callable[..., ExmailClient], auth_method: str
) -> None:
    client = make_client(auth_method=auth_method)
    assert (await client.user_get("bob@example.com")).alias == "bob@example.com"
    assert await client.token() == await client.token()


@pytest.mark.parametrize("auth_method", ["form", "basic"])
async def test_bad_credentials(make_client: Callable[..., ExmailClient], auth_method: str) -> None:
    client = make_client(client_secret="wrong-key-123", auth_method=auth_method)
    with pytest.raises(InvalidCredentials) as caught:
        await client.user_get("bob@example.com")
    assert "wrong-key-123" not in str(caught.value)
    assert "wrong-key-123" not in repr(client)
    assert KEY not in repr(make_client())
    assert ADMIN in repr(client)
