"""The listen long-poll over HTTP: hold, wake, version updates, batching, formats, bounds.

A test that needs a listen held waits for it (``held``); a test of a wake uses
``long_raw``, whose hold outlasts the test's own wait, and asserts what the answer says,
never how fast it came."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from tests.emulator.conftest import LONG_HOLD, WAIT, eventually, held, held_count

ADMIN = "admin@example.com"


def current_ver(emu: Emulator) -> str:
    return str(emu.state.companies[ADMIN].ver)


async def test_hold_times_out_with_ret_0(raw: Any) -> None:
    started = time.monotonic()
    body = await asyncio.wait_for(raw.call("listen", {"Ver": current_ver(raw.emu)}), WAIT)
    assert body == {"Ret": 0}
    assert time.monotonic() - started >= 0.25  # it was held (hold=0.3), not answered at once


async def test_behind_answers_version_update_at_once(raw: Any) -> None:
    _status, body = await raw.call_raw("listen", {"Ver": "0"})
    assert json.loads(body) == {"Ver": current_ver(raw.emu)}  # Ver is a string
    assert b'"Ver":"' in body


async def test_wakes_on_push(long_raw: Any) -> None:
    raw = long_raw
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(raw.emu)}))
    await held(raw.emu)
    _, answer = await raw.control(
        "mail", {"to": "bob@example.com", "subject": "Hi", "summary": "S"}
    )
    body = await asyncio.wait_for(task, WAIT)  # unwoken, it would hold for LONG_HOLD
    assert body["MailId"] == answer["mail_id"]
    assert body["UserName"] == body["Receiver"] == "bob@example.com"
    assert (body["Subject"], body["Summary"]) == ("Hi", "S")
    assert body["NewCount"] == raw.emu.state.companies[ADMIN].accounts["bob@example.com"].unread
    assert raw.emu.state.companies[ADMIN].pending == type(raw.emu.state.companies[ADMIN].pending)()


async def test_wakes_on_directory_change_with_version_update(long_raw: Any) -> None:
    raw = long_raw
    old = current_ver(raw.emu)
    task = asyncio.create_task(raw.call("listen", {"Ver": old}))
    await held(raw.emu)
    await raw.control("user", {"action": "mod", "alias": "bob@example.com", "position": "CTO"})
    body = await asyncio.wait_for(task, WAIT)  # unwoken, it would hold for LONG_HOLD
    assert int(body["Ver"]) > int(old)
    assert body["Ver"] == current_ver(raw.emu)


async def test_unread_update_push(raw: Any) -> None:
    await raw.control("mail", {"to": "bob@example.com"})
    await raw.call("listen", {"Ver": current_ver(raw.emu)})  # drain the reminder
    _status, answer = await raw.control("read", {"user": "bob@example.com", "count": 100})
    assert answer["unread"] == 0
    body = await raw.call("listen", {"Ver": current_ver(raw.emu)})
    assert body == {"UserName": "bob@example.com", "NewCount": 0}


async def test_version_first_then_pushes_in_an_array(raw: Any) -> None:
    await raw.control("mail", {"mails": [{"to": "bob@example.com"}] * 3})
    body = await raw.call("listen", {"Ver": "0"})
    assert isinstance(body, list)
    assert body[0] == {"Ver": current_ver(raw.emu)}
    assert [set(i) >= {"MailId"} for i in body[1:]] == [True] * 3


async def test_burst_is_batched_into_one_answer(long_raw: Any) -> None:
    raw = long_raw
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(raw.emu)}))
    await held(raw.emu)
    await raw.control(
        "mail", {"mails": [{"to": "bob@example.com", "subject": str(i)} for i in range(5)]}
    )
    body = await asyncio.wait_for(task, WAIT)
    assert [m["Subject"] for m in body] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("listen_format", ["concat", "lines"])
async def test_listen_formats(make_raw: Any, listen_format: str) -> None:
    async with Emulator(port=0, hold=0.3, listen_format=listen_format) as emu:  # type: ignore[arg-type]
        raw = make_raw(emu)
        await raw.fetch_token()
        await raw.control(
            "mail", {"mails": [{"to": "bob@example.com"}, {"to": "alice@example.com"}]}
        )
        _, body = await raw.call_raw("listen", {"Ver": current_ver(emu)})
        text = body.decode()
        if listen_format == "lines":
            parts = [json.loads(line) for line in text.split("\n")]
        else:
            assert "}{" in text
            decoder, parts, pos = json.JSONDecoder(), [], 0
            while pos < len(text):
                obj, pos = decoder.raw_decode(text, pos)
                parts.append(obj)
        assert [p["UserName"] for p in parts] == ["bob@example.com", "alice@example.com"]
        _, single = await raw.call_raw("listen", {"Ver": "0"})
        assert json.loads(single) == {"Ver": current_ver(emu)}  # one item: a single object


async def test_max_batch_and_pending_bound(make_raw: Any) -> None:
    async with Emulator(port=0, hold=0.3, max_batch=2, max_pending=3) as emu:
        raw = make_raw(emu)
        await raw.fetch_token()
        await raw.control(
            "mail", {"mails": [{"to": "bob@example.com", "subject": str(i)} for i in range(5)]}
        )
        _, state = await raw.control("state", method="GET")
        assert state["companies"][0]["dropped"] == 2
        assert state["companies"][0]["pending"] == 3
        first = await raw.call("listen", {"Ver": current_ver(emu)})
        second = await raw.call("listen", {"Ver": current_ver(emu)})
        assert [m["Subject"] for m in first] == ["2", "3"]
        assert second["Subject"] == "4"


async def test_one_of_several_listens_gets_the_push(long_raw: Any) -> None:
    raw = long_raw
    ver = current_ver(raw.emu)
    tasks = [asyncio.create_task(raw.call("listen", {"Ver": ver})) for _ in range(3)]
    await held(raw.emu, 3)
    _, answer = await raw.control("mail", {"to": "bob@example.com"})
    done, _ = await asyncio.wait(tasks, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result()["MailId"] for t in done] == [answer["mail_id"]]
    await held(raw.emu, 2)  # the other two still hold: the push did not end them
    await raw.emu.stop()  # which answers them now
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert sum("MailId" in r for r in results) == 1
    assert sum(r == {"Ret": 0} for r in results) == 2


async def test_listen_needs_a_valid_token(raw: Any) -> None:
    body = await raw.call("listen", {"Ver": "0"}, token="bogus")
    assert body["errcode"] == "1200"
    assert (await raw.call("listen", {"Ver": "x"}))["errcode"] == "1001"


async def test_many_companies_held_concurrently(session: aiohttp.ClientSession) -> None:
    n = 1000
    companies = [
        {
            "admin": f"admin@c{i}.test",
            "key": f"k{i}",
            "domains": [f"c{i}.test"],
            "users": [{"alias": f"u@c{i}.test"}],
        }
        for i in range(n)
    ]
    async with Emulator(port=0, hold=LONG_HOLD, seed={"companies": []}) as emu:
        async with session.post(
            emu.base_url + "/_emulator/company", json={"companies": companies}
        ) as r:
            assert (await r.json())["added"] == n
        tokens = [
            emu.state.issue_token(f"admin@c{i}.test", f"k{i}") for i in range(n)
        ]  # the state is a plain object: tests may call it directly
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as many:

            async def listen(i: int) -> Any:
                data = {"Ver": str(emu.state.companies[f"admin@c{i}.test"].ver)}
                headers = {"Authorization": f"Bearer {tokens[i]}"}
                async with many.post(emu.api_url + "listen", data=data, headers=headers) as resp:
                    return await resp.json()

            tasks = [asyncio.create_task(listen(i)) for i in range(n)]
            await held(emu, n, seconds=LONG_HOLD / 2)  # the first must still be held
            mails = [{"to": f"u@c{i}.test", "subject": f"s{i}"} for i in range(n)]
            async with session.post(emu.base_url + "/_emulator/mail", json={"mails": mails}) as r:
                assert len((await r.json())["mail_ids"]) == n
            results = await asyncio.gather(*tasks)  # an unwoken one answers {"Ret": 0}
        assert [r["Subject"] for r in results] == [f"s{i}" for i in range(n)]
        assert held_count(emu) == 0


async def test_vanished_listener_does_not_swallow_pushes(raw: Any) -> None:
    ver = current_ver(raw.emu)
    headers = {"Authorization": f"Bearer {raw.token}"}
    async with aiohttp.ClientSession() as impatient:
        gone = asyncio.create_task(
            impatient.post(raw.emu.api_url + "listen", data={"Ver": ver}, headers=headers)
        )
        await held(raw.emu)
        gone.cancel()  # the client gives up on its held listen and goes away
        with pytest.raises(asyncio.CancelledError):
            await gone
    await eventually(lambda: held_count(raw.emu) == 0, what="the vanished listen to end")
    _, answer = await raw.control("mail", {"to": "bob@example.com"})
    assert (await raw.call("listen", {"Ver": ver}))["MailId"] == answer["mail_id"]


async def test_stop_answers_held_listens_at_once(make_raw: Any) -> None:
    emu = Emulator(port=0, hold=30.0)
    await emu.start()
    raw = make_raw(emu)
    await raw.fetch_token()
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(emu)}))
    await held(emu)
    await emu.stop()
    # Not answered by the hub, the listen would be cut when the server gives up on it
    # (a disconnect, not an answer) or outlast WAIT, since its hold is 30 s.
    assert await asyncio.wait_for(task, WAIT) == {"Ret": 0}
