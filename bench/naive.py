"""The naive baseline: ``python -m bench.naive SPEC.json``.

What public Exmail clients look like: synchronous ``requests`` and ``pika``, one thread
per tenant (a blocking long poll cannot share a thread), and one event at a time,
each publish waiting for its confirm before the next. Errors are caught wholesale and
the loop sleeps, as those clients do.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import pika
import requests

from bench.cloudevent import mail_event


def token(session: requests.Session, tenant: dict[str, Any]) -> str:
    resp = session.post(
        tenant["token_url"],
        data={
            "grant_type": "client_credentials",
            "client_id": tenant["client_id"],
            "client_secret": tenant["client_secret"],
        },
        timeout=10,
    )
    return str(resp.json()["access_token"])


def serve(spec: dict[str, Any], tenant: dict[str, Any]) -> None:
    name, api = tenant["name"], tenant["api_url"]
    session = requests.Session()
    connection = pika.BlockingConnection(pika.URLParameters(spec["amqp_url"]))
    channel = connection.channel()
    channel.confirm_delivery()
    access_token = token(session, tenant)
    ver = session.post(
        api + "user/list", data={"Ver": "0", "access_token": access_token}, timeout=10
    ).json()["Ver"]
    while True:
        try:
            resp = session.post(
                api + "listen",
                data={"Ver": str(ver), "access_token": access_token},
                timeout=spec["hold"] + 10,
            )
            if not resp.content:
                continue
            doc = resp.json()
            for item in doc if isinstance(doc, list) else [doc]:
                if "MailId" in item:
                    event_id, body = mail_event(name, item)
                    channel.basic_publish(
                        spec["exchange"],
                        f"{name}.mail.new",
                        body,
                        pika.BasicProperties(
                            content_type="application/cloudevents+json",
                            message_id=event_id,
                            type="exmail.mail.new",
                            delivery_mode=2,
                        ),
                        mandatory=True,
                    )
                elif "Ver" in item:
                    ver = item["Ver"]
                elif str(item.get("errcode", "0")) == "1200":
                    access_token = token(session, tenant)
        except Exception as exc:
            print(f"{name}: {exc!r}", file=sys.stderr)
            time.sleep(1)


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    threads = [threading.Thread(target=serve, args=(spec, t), daemon=True) for t in spec["tenants"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    # SIGTERM as a clean exit, so ``--profile`` (cProfile) writes this process's stats.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
