"""The one CloudEvent both baselines publish for a new-mail reminder: ``(id, body)``.

Built with plain ``json`` and ``hashlib``, as a hand-written client would; the relay's
own events come from :mod:`relay.core.events` and are not used here on purpose.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def mail_event(tenant: str, item: dict[str, Any]) -> tuple[str, bytes]:
    user = item["UserName"]
    event_id = hashlib.sha256(f"{tenant}|{user}|{item['MailId']}".encode()).hexdigest()[:32]
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"exmail-relay/{tenant}",
        "type": "exmail.mail.new",
        "subject": user,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "user": user,
            "mail_id": item["MailId"],
            "sender": item.get("Sender"),
            "receiver": item.get("Receiver"),
            "subject": item.get("Subject"),
            "summary": item.get("Summary"),
            "unread": item.get("NewCount"),
        },
    }
    return event_id, json.dumps(event).encode()
