"""A listen answer with a 5 MB field loses nothing: its neighbours arrive, the field is cut.

End to end on real parts: the emulator hands out six unusual mails in one listen answer,
one of them with a 5 MB summary (over the 4 MB default ``max_response_bytes``); the
relay publishes all six to the real RabbitMQ, the big one cut to ``max_field_bytes``
with ``data.truncated`` naming the field, and the cut is counted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.pipeline.support import Broker, Consumer, accounts, settings_for
from tests.support import running_relay

pytestmark = pytest.mark.rabbitmq

FIELD_CAP = 64 * 1024


async def _post_mails(emu: Emulator, mails: list[dict[str, Any]]) -> Any:
    # A 5 MB control body goes as a stream: aiohttp warns (an error here) on raw bytes.
    body = io.BytesIO(json.dumps({"mails": mails}).encode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{emu.base_url}/_emulator/mail",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_5mb_summary_is_cut_and_every_mail_of_its_answer_is_delivered(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    users = await accounts(emulator)
    big = "大" * (5 * 1024 * 1024 // 3 + 1)  # 5 MB of UTF-8
    mails: list[dict[str, Any]] = [
        {"to": users[0], "subject": "the big one", "summary": big},
        {"to": users[1 % len(users)], "subject": "", "summary": ""},
        {"to": users[0], "subject": 'quotes " and \\ backslashes \n and a newline'},
        {"to": users[0], "subject": "emoji 📬 and 中文", "sender": "渠道 <a@b.cn>"},
        {"to": users[0], "subject": "just under the cap", "summary": "s" * (FIELD_CAP - 10)},
        {"to": users[0], "subject": "plain"},
    ]
    settings = settings_for(emulator, tmp_path, broker)
    registry = CollectorRegistry()  # its own: other tests' relays count into the default
    observer = PrometheusObserver(Metrics(registry))
    async with Consumer(broker) as consumer, running_relay(settings, observer=observer):
        await consumer.wait_for(1)  # the bootstrap's directory.changed: the relay listens
        answer = await _post_mails(emulator, mails)
        await consumer.wait_for(1 + len(mails), seconds=60)

    docs = [json.loads(m.body) for m in consumer.messages if m.type == "exmail.mail.new"]
    by_id = {d["data"]["mail_id"]: d["data"] for d in docs}
    assert sorted(by_id) == sorted(answer["mail_ids"])  # every mail of the answer
    for mail_id, sent in zip(answer["mail_ids"], mails, strict=True):
        got = by_id[mail_id]
        assert got["subject"] == sent["subject"]
        if sent.get("summary") is big:
            assert got["truncated"] == ["summary"]
            assert big.startswith(got["summary"])
            assert FIELD_CAP - 3 <= len(got["summary"].encode()) <= FIELD_CAP
        else:
            assert "truncated" not in got
            assert got["summary"] == sent.get("summary", "")
            if "sender" in sent:
                assert got["sender"] == sent["sender"]
    counted = registry.get_sample_value(
        "exmail_relay_fields_truncated_total", {"tenant": "acme", "field": "summary"}
    )
    assert counted == 1.0
