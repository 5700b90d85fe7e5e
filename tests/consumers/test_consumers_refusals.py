"""The recipes refuse what they must: a request signed with another secret, a stale
timestamp, a body that is no structured-mode CloudEvent. Without this, a recipe that
accepted everything would pass tests/consumers/test_consumers_recipes.py too.

No broker: the recipes run with their webhook receiver only."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from relay.core import events
from relay.core.signing import decode_secret, sign_headers
from relay.sinks.webhook import CONTENT_TYPE
from tests.consumers.support import Recipe, java_command, node_command, python_command
from tests.support import eventually

pytestmark = pytest.mark.timeout(120)


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize("language", ["node", "python", "java"])
async def test_a_recipe_refuses_bad_signatures_and_non_cloudevents(
    language: str, tmp_path: Path
) -> None:
    command = {
        "node": node_command,
        "python": python_command,
        "java": lambda: java_command(tmp_path / "build"),
    }[language]()
    ours, theirs = secret(), secret()
    event = events.mail_new(tenant="acme", user="bob@acme.test", mail_id="M1", sender="a@x.cn",
                            receiver="bob@acme.test", subject="主题", summary="", unread=1,
                            now=datetime.now(UTC))  # fmt: skip
    body = event.encode()

    def signed(
        key: str, *, at: float | None = None, content_type: str = CONTENT_TYPE
    ) -> dict[str, str]:
        stamp = int(time.time() if at is None else at)
        headers = sign_headers([decode_secret(key)], event.id, stamp, body)
        return headers | {"Content-Type": content_type}

    env = {"WEBHOOK_PORT": "0", "WEBHOOK_SECRETS": ours}
    async with Recipe(language, command, env, tmp_path / "recipe.log") as recipe:
        url = f"http://127.0.0.1:{recipe.ready['webhook_port']}/hook"
        cases = [
            (signed(theirs), 401),
            (signed(ours, at=time.time() - 3600), 401),
            (signed(ours, content_type="application/json"), {"java": 415}.get(language, 400)),
            (signed(ours), 204),
        ]
        async with aiohttp.ClientSession() as http:
            for headers, status in cases:
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == status, (headers, await response.text())
        await eventually(lambda: len(recipe.refused) == 3 and recipe.accepted, what="4 lines")
    assert [r["id"] for r in recipe.accepted] == [event.id]
    assert recipe.accepted[0]["verified_with"] == [0]
    assert all(r["id"] == event.id for r in recipe.refused)
