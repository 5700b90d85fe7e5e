"""The listen long-poll over HTTP: hold, wake, version updates, batching, formats, bounds."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator

ADMIN = "admin@example.com"


def current_ver(emu: Emulator) -> str:
    return str(emu.state.companies[ADMIN].ver)


async def test_hold_times_out_with_ret_0(raw: Any) -> None:
    started = time.monotonic()
    body = await raw.call("listen", {"Ver": current_ver(raw.emu)})
    elapsed = time.monotonic() - started
    assert body == {"Ret": 0}
    assert 0.25 <= elapsed < 2.0


async def test_behind_answers_version_update_at_once(raw: Any) -> None:
    _status, body = await raw.call_raw("listen", {"Ver": "0"})
    assert json.loads(body) == {"Ver": current_ver(raw.emu)}  # Ver is a string
    assert b'"Ver":"' in body


async def test_wakes_on_push(raw: Any) -> None:
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(raw.emu)}))
    await asyncio.sleep(0.05)
    assert raw.emu.app[_hub()].open_count() == 1
    started = time.monotonic()
    _, answer = await raw.control(
        "mail", {"to": "bob@example.com", "subject": "Hi", "summary": "S"}
    )
    body = await task
    assert time.monotonic() - started < 0.2
    assert body["MailId"] == answer["mail_id"]
    assert body["UserName"] == body["Receiver"] == "bob@example.com"
    assert (body["Subject"], body["Summary"]) == ("Hi", "S")
    assert body["NewCount"] == raw.emu.state.companies[ADMIN].accounts["bob@example.com"].unread
    assert raw.emu.state.companies[ADMIN].pending == type(raw.emu.state.companies[ADMIN].pending)()


async def test_wakes_on_directory_change_with_version_update(raw: Any) -> None:
    old = current_ver(raw.emu)
    task = asyncio.create_task(raw.call("listen", {"Ver": old}))
    await asyncio.sleep(0.05)
    await raw.control("user", {"action": "mod", "alias": "bob@example.com", "position": "CTO"})
    body = await task
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


async def test_burst_is_batched_into_one_answer(raw: Any) -> None:
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(raw.emu)}))
    await asyncio.sleep(0.05)
    await raw.control(
        "mail", {"mails": [{"to": "bob@example.com", "subject": str(i)} for i in range(5)]}
    )
    body = await task
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


async def test_one_of_several_listens_gets_the_push(raw: Any) -> None:
    ver = current_ver(raw.emu)
    tasks = [asyncio.create_task(raw.call("listen", {"Ver": ver})) for _ in range(3)]
    await asyncio.sleep(0.05)
    await raw.control("mail", {"to": "bob@example.com"})
    results = await asyncio.gather(*tasks)
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
    async with Emulator(port=0, hold=3.0, seed={"companies": []}) as emu:
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
            for _ in range(200):
                await asyncio.sleep(0.02)
                if emu.app[_hub()].open_count() == n:
                    break
            assert emu.app[_hub()].open_count() == n
            mails = [{"to": f"u@c{i}.test", "subject": f"s{i}"} for i in range(n)]
            async with session.post(emu.base_url + "/_emulator/mail", json={"mails": mails}) as r:
                assert len((await r.json())["mail_ids"]) == n
            results = await asyncio.gather(*tasks)
        assert [r["Subject"] for r in results] == [f"s{i}" for i in range(n)]
        assert emu.app[_hub()].open_count() == 0


def _hub() -> Any:
    from relay.emulator._http import HUB

    return HUB


async def test_vanished_listener_does_not_swallow_pushes(raw: Any) -> None:
    ver = current_ver(raw.emu)
    timeout = aiohttp.ClientTimeout(total=0.1)
    headers = {"Authorization": f"Bearer {raw.token}"}
    async with aiohttp.ClientSession(timeout=timeout) as impatient:
        with pytest.raises(asyncio.TimeoutError):
            await impatient.post(raw.emu.api_url + "listen", data={"Ver": ver}, headers=headers)
    for _ in range(50):
        if raw.emu.app[_hub()].open_count() == 0:
            break
        await asyncio.sleep(0.01)
    assert raw.emu.app[_hub()].open_count() == 0
    _, answer = await raw.control("mail", {"to": "bob@example.com"})
    assert (await raw.call("listen", {"Ver": ver}))["MailId"] == answer["mail_id"]


async def test_stop_answers_held_listens_at_once(make_raw: Any) -> None:
    emu = Emulator(port=0, hold=30.0)
    await emu.start()
    raw = make_raw(emu)
    await raw.fetch_token()
    task = asyncio.create_task(raw.call("listen", {"Ver": current_ver(emu)}))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await emu.stop()
    assert time.monotonic() - started < 1.0
    assert await task == {"Ret": 0}
