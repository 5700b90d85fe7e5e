"""Redelivery mode of the pure emulator state: pushes handed out stay unacknowledged
until the same token listens again; another token gets them again."""

from __future__ import annotations

from relay.emulator import EmulatorState

ADMIN, KEY = "admin@example.com", "exmail-demo-key"


def _listen(state: EmulatorState, token: str) -> list[dict[str, object]]:
    company = state.authenticate(token)
    state.listen_opened(company, token)
    items = state.take_listen(company, company.ver, 100)
    state.handed_out(company, items, token)
    return items


def _recipient(state: EmulatorState) -> str:
    company = next(iter(state.companies.values()))
    return next(iter(company.accounts))


def test_a_new_token_gets_unacknowledged_pushes_again() -> None:
    state = EmulatorState(redeliver=True)
    first = state.issue_token(ADMIN, KEY)
    state.deliver_mail(to=_recipient(state), sender="s@x.com", subject="a", summary="")
    handed = _listen(state, first)
    assert [i["Subject"] for i in handed] == ["a"]
    second = state.issue_token(ADMIN, KEY)  # the client restarted before storing it
    again = _listen(state, second)
    assert [i["MailId"] for i in again] == [i["MailId"] for i in handed]


def test_the_same_token_listening_again_acknowledges() -> None:
    state = EmulatorState(redeliver=True)
    token = state.issue_token(ADMIN, KEY)
    state.deliver_mail(to=_recipient(state), sender="s@x.com", subject="a", summary="")
    assert len(_listen(state, token)) == 1
    assert _listen(state, token) == []
    assert _listen(state, state.issue_token(ADMIN, KEY)) == []


def test_without_redelivery_a_handed_out_push_is_gone() -> None:
    state = EmulatorState()
    token = state.issue_token(ADMIN, KEY)
    state.deliver_mail(to=_recipient(state), sender="s@x.com", subject="a", summary="")
    assert len(_listen(state, token)) == 1
    assert _listen(state, state.issue_token(ADMIN, KEY)) == []
