"""The admin API's routes (under ``/admin/v1/``) and how each gathers across replicas.

| route | does | on which replicas |
|---|---|---|
| ``GET deadletters`` | list, with filters and paging | each (its part labelled) |
| ``POST deadletters/replay`` | queue the matching dead letters again | each, or ``replica`` |
| ``POST deadletters/drop`` | delete the matching dead letters | each, or ``replica`` |
| ``GET endpoints`` | each endpoint's switch, pending and dead | each |
| ``POST endpoints/{name}/enable``, ``.../disable`` | switch an endpoint | every one |
| ``GET journal/check`` | ``PRAGMA integrity_check`` and counts | each |
| ``GET shards`` | which replica holds which shard and tenants | this one (presence) |
| ``POST tenants/{tenant}/directory/confirm-held`` | commit the held listing | its poller |
| ``POST tenants/{tenant}/directory/poll`` | poll the directory now | its poller |
| ``GET openapi.json`` | the document (public) | this one |

Every gathered answer has one shape: ``replicas`` (one entry per replica asked:
``ok`` and its figures, or ``ok: false`` and the ``error``), ``unreachable`` (the ids
whose part is missing), ``complete`` (none is) and the route's own fields (``items``
labelled by ``replica``, or totals). A call forwarded from another replica (``Via``)
answers the same shape for this replica alone. The directory routes
(:mod:`relay.ops.admin_directory`) gather nothing: one replica polls a tenant, and the
call is forwarded to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from relay.gateway.problems import Problem
from relay.journal import DeadFilter, check_file
from relay.ops.admin import (
    ADMIN,
    WHAT,
    AdminApi,
    actor_of,
    asked,
    guard,
    hopped,
    json_answer,
    json_body,
    write_audit,
)
from relay.ops.admin_directory import confirm_held, poll_now
from relay.ops.admin_openapi import admin_document
from relay.ops.admin_peers import PeerFailure
from relay.ops.admin_query import (
    FILTER_FIELDS,
    START,
    WEBHOOK_PREFIX,
    Cursor,
    decode_cursor,
    encode_cursor,
    letter_json,
    parse_filter,
    parse_limit,
    parse_replica,
)

__all__ = ["admin_app"]

Part = dict[str, Any]
Local = Callable[[], Awaitable[Part]]
OPERATOR_REASON = "disabled by an operator (admin API)"
CHECK_TIMEOUT = 600.0
"""Seconds a peer's journal check may take: it reads the whole file."""


def _one(admin: AdminApi, fields: Part, **figures: Any) -> Part:
    """This replica's answer, in the gathered shape."""
    return {
        **fields,
        "replicas": [{"replica": admin.me, "ok": True, **figures}],
        "unreachable": [],
        "complete": True,
    }


async def _gather(
    request: web.Request,
    targets: list[str],
    local: Local,
    path_qs: Callable[[str], str] | None = None,
    body: Any = None,
    within: float | None = None,
) -> list[tuple[str, Part | PeerFailure]]:
    """Each target's part: this replica's from ``local``, the others' over HTTP (the same
    path and query, unless ``path_qs`` gives a replica's own)."""
    admin = request.app[ADMIN]
    actor = actor_of(request)

    async def part(replica: str) -> Part | PeerFailure:
        if replica == admin.me:
            return await local()
        where = request.path_qs if path_qs is None else path_qs(replica)
        return await admin.peers.call(
            replica, request.method, where, body, actor=actor, within=within
        )

    answers = await asyncio.gather(*(part(r) for r in targets))
    return list(zip(targets, answers, strict=True))


def _merge(parts: list[tuple[str, Part | PeerFailure]], totals: tuple[str, ...] = ()) -> Part:
    items: list[Any] = []
    replicas: list[Any] = []
    unreachable: list[str] = []
    sums = dict.fromkeys(totals, 0)
    for replica, part in parts:
        if isinstance(part, PeerFailure):
            replicas.append(part.to_json())
            unreachable.append(replica)
            continue
        items.extend(part.get("items", []))
        for entry in part.get("replicas", []):
            replicas.append(entry)
            for name in totals:
                sums[name] += int(entry.get(name, 0))
        unreachable.extend(part.get("unreachable", []))
    merged: Part = {"replicas": replicas, "unreachable": unreachable}
    merged["complete"] = not unreachable
    merged.update(sums)
    if any("items" in p for _, p in parts if not isinstance(p, PeerFailure)):
        merged["items"] = items
    return merged


def _targets(request: web.Request, replica: str | None) -> list[str]:
    if hopped(request):
        return [request.app[ADMIN].me]
    if replica is not None:
        return [replica]
    return request.app[ADMIN].peers.known()


# -- dead letters -----------------------------------------------------------------------


async def list_deadletters(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    query = request.query
    where = parse_filter(query)
    limit = parse_limit(query.get("limit"))
    replica = parse_replica(query.get("replica"))
    cursor = decode_cursor(query.get("cursor"))

    async def local() -> Part:
        place = START if cursor is None else cursor.get(admin.me)
        page = []
        if place is not None:
            after = None if place == START else place
            page = await admin.journal.dead_page(where, after=after, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        following: Cursor = {admin.me: (page[-1].seq, page[-1].sink)} if more else {}
        return _one(
            admin,
            {"items": [letter_json(d, admin.me) for d in page], "next": encode_cursor(following)},
            count=len(page),
        )

    targets = _targets(request, replica)
    if cursor is not None and not hopped(request):
        targets = [r for r in targets if r in cursor]
    kept = [(k, v) for k, v in query.items() if k in FILTER_FIELDS or k == "limit"]

    def path_qs(peer: str) -> str:
        place = START if cursor is None else cursor[peer]
        return request.path + "?" + urlencode([*kept, ("cursor", encode_cursor({peer: place}))])

    parts = await _gather(request, targets, local, path_qs)
    answer = _merge(parts)
    following: Cursor = {}
    for peer, part in parts:
        place = START if cursor is None else cursor.get(peer, START)
        try:
            told = None if isinstance(part, PeerFailure) else decode_cursor(part.get("next"))
        except Problem:  # a peer's answer this replica cannot read: ask it again later
            told = {peer: place}
        if isinstance(part, PeerFailure):  # keeps its place: asked again on the next page
            following[peer] = place
        else:
            following.update(told or {})
    answer["next"] = encode_cursor(following)
    return json_answer(answer)


FILTER_BODY = frozenset({*FILTER_FIELDS, "replica", "force"})
SWITCH_BODY = frozenset({"reason", "force"})


def _force(data: dict[str, Any]) -> bool:
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise Problem(400, "invalid-request", "Invalid request", "force: expected true or false")
    return force


async def replay_deadletters(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    data = await json_body(request, FILTER_BODY)
    where = parse_filter(data)
    replica = parse_replica(data.get("replica"))
    force = _force(data)
    if where.sink is not None and where.sink not in admin.configured and not force:
        raise Problem(
            409, "sink-not-configured", "Sink not configured",
            f"sink {where.sink!r} is not configured: replayed, its deliveries would wait in the"
            " journal (the next start retires them again). Configure it first, drop them, or"
            " send force: true",
        )  # fmt: skip

    async def local() -> Part:
        journal = admin.journal
        skipped: list[str] = []
        if where.sink is not None or force:
            count = await journal.replay(where=where)
        else:
            dead = {name for name, s in (await journal.stats()).sinks.items() if s.dead}
            count = 0
            for name in sorted(dead & admin.configured):
                count += await journal.replay(where=dataclasses.replace(where, sink=name))
            skipped = sorted(dead - admin.configured)
        write_audit(request, admin, asked(request), {"replayed": count, "skipped": skipped})
        return _one(admin, {}, replayed=count, skipped=skipped)

    parts = await _gather(request, _targets(request, replica), local, body=data)
    answer = _merge(parts, ("replayed",))
    if not hopped(request):
        write_audit(request, admin, asked(request), _summary(answer, "replayed"))
    return json_answer(answer)


def _summary(answer: Part, total: str) -> dict[str, Any]:
    return {total: answer[total], "unreachable": answer["unreachable"]}


async def drop_deadletters(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    data = await json_body(request, FILTER_BODY)
    where = parse_filter(data)
    replica = parse_replica(data.get("replica"))
    if where == DeadFilter():
        raise Problem(
            400, "invalid-request", "Invalid request",
            "drop needs a filter (sink, endpoint, tenant, type, event_id, since or until)",
        )  # fmt: skip

    async def local() -> Part:
        dropped, events = await admin.journal.drop_dead(where=where)
        write_audit(request, admin, asked(request), {"dropped": dropped, "events": events})
        return _one(admin, {}, dropped=dropped, events_deleted=events)

    parts = await _gather(request, _targets(request, replica), local, body=data)
    answer = _merge(parts, ("dropped", "events_deleted"))
    if not hopped(request):
        write_audit(request, admin, asked(request), _summary(answer, "dropped"))
    return json_answer(answer)


# -- endpoints ----------------------------------------------------------------------------


async def list_endpoints(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]

    async def local() -> Part:
        sinks = (await admin.journal.stats()).sinks
        names = set(admin.endpoints) | {
            s.removeprefix(WEBHOOK_PREFIX) for s in sinks if s.startswith(WEBHOOK_PREFIX)
        }
        items = []
        for name in sorted(names):
            stats = sinks.get(WEBHOOK_PREFIX + name)
            items.append(
                {
                    "replica": admin.me,
                    "endpoint": name,
                    "sink": WEBHOOK_PREFIX + name,
                    "configured": name in admin.endpoints,
                    "disabled": bool(stats and stats.disabled),
                    "reason": stats.disabled_reason if stats else None,
                    "pending": stats.pending if stats else 0,
                    "dead": stats.dead if stats else 0,
                }
            )
        return _one(admin, {"items": items})

    replica = parse_replica(request.query.get("replica"))
    parts = await _gather(request, _targets(request, replica), local)
    return json_answer(_merge(parts))


async def switch_endpoint(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    name = request.match_info["name"].removeprefix(WEBHOOK_PREFIX)
    enable = request.path.endswith("/enable")
    data = await json_body(request, SWITCH_BODY)
    request[WHAT] = {"endpoint": name, **asked(request)}
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise Problem(400, "invalid-request", "Invalid request", "reason: a string of <= 200")
    if name not in admin.endpoints and not _force(data):
        known = ", ".join(admin.endpoints) or "none"
        raise Problem(
            404, "unknown-endpoint", "Unknown endpoint",
            f"no webhook endpoint named {name!r} is configured (configured: {known})",
        )  # fmt: skip
    sink = WEBHOOK_PREFIX + name

    async def local() -> Part:
        was = await admin.journal.disabled(sink)
        why = None if enable else (reason or OPERATOR_REASON)
        await admin.journal.set_disabled(sink, not enable, why)
        write_audit(request, admin, asked(request), {"disabled": not enable, "was": was})
        return _one(admin, {}, was_disabled=was is not None, was_reason=was)

    # Every replica, whatever the body says: each drains the endpoint from its own journal.
    parts = await _gather(request, _targets(request, None), local, body=data)
    answer = {"endpoint": name, "disabled": not enable, **_merge(parts)}
    if not hopped(request):
        summary = {"disabled": not enable, "unreachable": answer["unreachable"]}
        write_audit(request, admin, asked(request), summary)
    return json_answer(answer)


# -- the journal and the shards -----------------------------------------------------------


async def journal_check(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]

    async def local() -> Part:
        found = await asyncio.to_thread(check_file, admin.journal.path)
        sinks = (
            None
            if found.sinks is None
            else {s: {"pending": p, "dead": d} for s, (p, d) in sorted(found.sinks.items())}
        )
        item = {
            "replica": admin.me,
            "path": str(admin.journal.path),
            "ok": found.ok,
            "problems": list(found.problems),
            "sinks": sinks,
            "sinks_error": found.sinks_error,
        }
        return _one(admin, {"items": [item]}, sound=found.ok)

    replica = parse_replica(request.query.get("replica"))
    targets = _targets(request, replica)
    parts = await _gather(request, targets, local, within=CHECK_TIMEOUT)
    answer = _merge(parts)
    answer["ok"] = answer["complete"] and all(i["ok"] for i in answer["items"])
    return json_answer(answer)


async def shards(request: web.Request) -> web.Response:
    return json_answer(dict(request.app[ADMIN].shards()))


async def openapi(request: web.Request) -> web.Response:
    return json_answer(admin_document())


def admin_app(admin: AdminApi) -> web.Application:
    """The ``/admin/v1/`` sub-application."""
    app = web.Application(middlewares=[guard])
    app[ADMIN] = admin
    app.router.add_get("/deadletters", list_deadletters, allow_head=False)
    app.router.add_post("/deadletters/replay", replay_deadletters)
    app.router.add_post("/deadletters/drop", drop_deadletters)
    app.router.add_get("/endpoints", list_endpoints, allow_head=False)
    app.router.add_post("/endpoints/{name}/enable", switch_endpoint)
    app.router.add_post("/endpoints/{name}/disable", switch_endpoint)
    app.router.add_get("/journal/check", journal_check, allow_head=False)
    app.router.add_get("/shards", shards, allow_head=False)
    app.router.add_post("/tenants/{tenant}/directory/confirm-held", confirm_held)
    app.router.add_post("/tenants/{tenant}/directory/poll", poll_now)
    app.router.add_get("/openapi.json", openapi, allow_head=False)
    return app
