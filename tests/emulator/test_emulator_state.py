"""Pure-state tests: the protocol's rules with a fake clock, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.emulator import ApiError, EmulatorState, demo_seed
from relay.emulator._seed import split_path
from relay.emulator._state import LoginRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make(**kw: object) -> tuple[EmulatorState, Clock]:
    clock = Clock()
    return EmulatorState(demo_seed(), clock=clock, **kw), clock  # type: ignore[arg-type]


def test_ver_strictly_increases_even_when_the_clock_stands_still() -> None:
    state, _ = make()
    company = state.companies["admin@example.com"]
    versions = [state.bump(company) for _ in range(5)]
    assert versions == sorted(set(versions))
    assert versions[0] > 1_700_000_000_000


def test_ver_follows_the_clock_when_it_moves() -> None:
    state, clock = make()
    company = state.companies["admin@example.com"]
    clock.now += 10
    assert state.bump(company) == 1_700_000_010_000


def test_user_list_folds_to_the_latest_action_per_account() -> None:
    state, _ = make()
    c = state.companies["admin@example.com"]
    before = c.ver
    state.user_sync(c, "add", "new1@example.com", name="N1")
    state.user_sync(c, "add", "new2@example.com", name="N2")
    state.user_sync(c, "mod", "new2@example.com", name="N2b")
    state.user_sync(c, "del", "new1@example.com")
    state.user_sync(c, "mod", "bob@example.com", position="Lead")
    listed = {e["Alias"]: e["Action"] for e in state.user_list(c, before)["List"]}
    assert listed == {"new1@example.com": 3, "new2@example.com": 2, "bob@example.com": 2}
    assert state.user_list(c, c.ver)["Count"] == 0


def test_user_list_v14_codes() -> None:
    state, _ = make(action_codes="v1.4")
    c = state.companies["admin@example.com"]
    before = c.ver
    state.user_sync(c, "add", "new@example.com")
    state.user_sync(c, "del", "bob@example.com")
    state.user_sync(c, "mod", "alice@example.com", tel="1")
    listed = {e["Alias"]: e["Action"] for e in state.user_list(c, before)["List"]}
    assert listed == {"new@example.com": 2, "bob@example.com": 1, "alice@example.com": 3}
    assert {e["Action"] for e in state.user_list(c, 0)["List"]} == {2}


def test_token_expiry_and_supersession() -> None:
    state, clock = make(token_ttl=10)
    first = state.issue_token("admin@example.com", "exmail-demo-key")
    assert state.authenticate(first).admin == "admin@example.com"
    second = state.issue_token("ADMIN@example.com", "exmail-demo-key")
    with pytest.raises(ApiError) as err:
        state.authenticate(first)
    assert err.value.errcode == "1200"
    clock.now += 10
    with pytest.raises(ApiError):
        state.authenticate(second)
    with pytest.raises(ApiError) as bad:
        state.issue_token("admin@example.com", "wrong")
    assert bad.value.errcode == "1101"


def test_pending_queue_is_bounded_and_counts_drops() -> None:
    state, _ = make(max_pending=3)
    c = state.companies["admin@example.com"]
    ids = [state.deliver_mail("bob@example.com", subject=str(i)) for i in range(5)]
    assert c.dropped == 2
    items = state.take_listen(c, c.ver, 10)
    assert [i["MailId"] for i in items] == ids[2:]


def test_take_listen_version_first_then_batch() -> None:
    state, _ = make()
    c = state.companies["admin@example.com"]
    for _ in range(4):
        state.deliver_mail("bob@example.com")
    items = state.take_listen(c, 0, 3)
    assert items[0] == {"Ver": str(c.ver)}
    assert len(items) == 4
    assert len(c.pending) == 1
    assert state.take_listen(c, c.ver, 3)[0]["NewCount"] == c.accounts["bob@example.com"].unread


def test_sso_ticket_rules() -> None:
    state, clock = make(authkey_ttl=5)
    c = state.companies["admin@example.com"]
    ticket = state.issue_authkey(c, "bob@example.com")
    with pytest.raises(LoginRefused, match="user"):
        state.sso_login("admin@example.com", "alice@example.com", ticket)
    assert state.sso_login("admin@example.com", "bob@example.com", ticket) == "bob@example.com"
    with pytest.raises(LoginRefused, match="already used"):
        state.sso_login("admin@example.com", "bob@example.com", ticket)
    late = state.issue_authkey(c, "bob@example.com")
    clock.now += 5
    with pytest.raises(LoginRefused, match="expired"):
        state.sso_login("admin@example.com", "bob@example.com", late)


def test_party_rename_moves_subtree_and_members() -> None:
    state, _ = make()
    c = state.companies["admin@example.com"]
    before = c.ver
    state.party_sync(c, "mod", "Engineering", "R&D")
    assert "R&D/Platform" in c.parties
    assert "Engineering" not in c.parties
    assert c.accounts["bob@example.com"].parties == ["R&D/Platform"]
    changed = {e["Alias"] for e in state.user_list(c, before)["List"]}
    assert "bob@example.com" in changed
    assert "zhangwei@example.com" not in changed


def test_reset_restores_the_seed_and_clears_tokens() -> None:
    state, _ = make()
    token = state.issue_token("admin@example.com", "exmail-demo-key")
    c = state.companies["admin@example.com"]
    state.user_sync(c, "del", "bob@example.com")
    state.reset()
    assert "bob@example.com" in state.companies["admin@example.com"].accounts
    with pytest.raises(ApiError):
        state.authenticate(token)
    state.reset(empty=True)
    assert state.companies == {}


def test_repr_and_snapshot_hide_secrets() -> None:
    state, _ = make()
    token = state.issue_token("admin@example.com", "exmail-demo-key")
    text = repr(state) + repr(state.companies["admin@example.com"]) + str(state.snapshot())
    assert "exmail-demo-key" not in text
    assert token not in text


@given(st.lists(st.text(alphabet="ab/ ", max_size=70), max_size=7))
def test_split_path_never_accepts_bad_paths(levels: list[str]) -> None:
    parts = split_path("/".join(levels))
    if isinstance(parts, tuple):
        assert len(parts) <= 5
        assert all(0 < len(p) <= 64 and "/" not in p for p in parts)
