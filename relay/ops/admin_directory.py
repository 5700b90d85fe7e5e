"""``POST /admin/v1/tenants/{tenant}/directory/confirm-held`` and ``.../directory/poll``:
an api2 tenant's directory poller, now, on the replica that runs it.

Where it sits: routes of the admin API (:mod:`relay.ops.admin`); the work is the
poller's (:meth:`relay.runtime.polling.DirectoryPollers.confirm_held`, ``poll_now``,
served between polls: :mod:`relay.runtime.pollasks`). A held listing lives in the memory
of the one replica that polls the tenant, so unlike the journal routes nothing is
gathered: the replica called applies the call when it polls the tenant, and otherwise
forwards it once to the one that does (static mode: the shard arithmetic; lease mode:
the holder of the tenant's shard as *authenticated* presence tells, as the gateway
forwards), with the admin token, ``Via`` and the caller's fingerprint
(:meth:`relay.ops.admin_peers.Peers.exchange`). The owner's answer comes back as it
was, its problem too; the owner writes the audit line of what it applied, the replica
called one more naming where it went.

Answers: ``confirm-held`` the hold it committed (``confirmed``: its counts and
``since``), the ``events`` committed and the tenant's ``directory`` status after;
``poll`` the poll's ``outcome`` and ``directory``. Problems: 404 ``unknown-tenant``, 409
``directory-not-polled`` (not an api2 tenant with directory polls), 409 ``nothing-held``,
409 ``hold-changed`` (``since`` names another hold than the one held), 503
``tenant-moving`` (nobody polls it right now: a start, a takeover), 503
``directory-busy`` (a poll under way did not end within the wait; nothing done), 504
``directory-timeout`` (started, not done within the wait), 502 ``peer-unreachable``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from aiohttp import web

from relay.gateway.problems import TYPE_PREFIX, Problem
from relay.journal import JournalError
from relay.ops.admin import (
    ADMIN,
    WHAT,
    AdminApi,
    actor_of,
    asked,
    hopped,
    json_answer,
    json_body,
    write_audit,
)
from relay.ops.admin_peers import PeerFailure
from relay.runtime.pollasks import AskTimeout, HoldChanged, NothingHeld, NotPolled

__all__ = ["CONFIRM_WAIT", "POLL_WAIT", "confirm_held", "poll_now"]

CONFIRM_WAIT = 30.0
"""Seconds a confirmation waits for a poll under way to end (then 503, nothing done)."""
POLL_WAIT = 60.0
"""Seconds ``poll`` waits for its poll (one under way first)."""
HOP_MARGIN = 5.0
"""Seconds more a forwarding replica waits for the owner than the owner waits."""

CONFIRM_BODY = frozenset({"since"})
Kind = Literal["confirm", "poll"]


async def confirm_held(request: web.Request) -> web.Response:
    return await _directory_call(request, "confirm")


async def poll_now(request: web.Request) -> web.Response:
    return await _directory_call(request, "poll")


async def _directory_call(request: web.Request, kind: Kind) -> web.Response:
    admin = request.app[ADMIN]
    tenant = request.match_info["tenant"]
    request[WHAT] = {"tenant": tenant}  # a refused body is audited with its tenant too
    data = await json_body(request, CONFIRM_BODY if kind == "confirm" else frozenset())
    request[WHAT] = {"tenant": tenant, **data}
    since = _since(data.get("since"))
    _check_tenant(admin, tenant)
    if admin.pollers is not None and admin.pollers.polls(tenant):
        answer = await _apply(admin, tenant, kind, since)
        write_audit(request, admin, asked(request), _summary(answer))
        return json_answer(answer)
    owner = admin.owner_of(tenant)
    if owner is None or owner == admin.me or hopped(request):
        raise Problem(
            503, "tenant-moving", "Tenant changing owner",
            f"no replica polls tenant {tenant!r}'s directory right now (a start or a takeover"
            " under way); try again", headers={"Retry-After": "1"},
        )  # fmt: skip
    wait = (CONFIRM_WAIT if kind == "confirm" else POLL_WAIT) + HOP_MARGIN
    got = await admin.peers.exchange(
        owner, "POST", request.path, data, actor=actor_of(request), within=wait
    )
    if isinstance(got, PeerFailure):
        raise Problem(
            502, "peer-unreachable", "The owning replica is unreachable",
            f"replica {owner} polls tenant {tenant!r}: {got.error}",
        )  # fmt: skip
    status, answer = got
    if status != 200:
        raise _problem_of(owner, status, answer)
    write_audit(request, admin, asked(request), {"forwarded_to": owner, **_summary(answer)})
    return json_answer(answer)


def _since(value: object) -> float | None:
    if value is None:
        return None
    try:  # a JSON integer past a float's range is an OverflowError, not a 500
        since = None if isinstance(value, bool) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        since = None
    if since is None or not isinstance(value, int | float) or not math.isfinite(since):
        raise Problem(
            400, "invalid-request", "Invalid request",
            "since: the held listing's since, a number as /status.json shows it",
        )  # fmt: skip
    return since


def _check_tenant(admin: AdminApi, tenant: str) -> None:
    if tenant not in admin.tenants:
        raise Problem(404, "unknown-tenant", "Unknown tenant", f"no enabled tenant {tenant!r}")
    if tenant not in admin.polled:
        raise Problem(
            409, "directory-not-polled", "Directory not polled",
            f"tenant {tenant!r} has no directory polls: only an api2 tenant with a"
            " contact_secret and a directory_interval is listed (and can hold a listing)",
        )  # fmt: skip


async def _apply(admin: AdminApi, tenant: str, kind: Kind, since: float | None) -> dict[str, Any]:
    """The call applied here, or its problem."""
    pollers = admin.pollers
    assert pollers is not None
    answer: dict[str, Any] = {"tenant": tenant, "replica": admin.me}
    try:
        if kind == "confirm":
            done = await pollers.confirm_held(tenant, since=since, within=CONFIRM_WAIT)
            held = done.held
            answer["confirmed"] = {
                "deleted": held.deleted,
                "added": held.added,
                "updated": held.updated,
                "members": held.members,
                "listed": held.listed,
                "polls": held.polls,
                "since": held.since,
            }
            answer["events"] = done.events
        else:
            answer["outcome"] = await pollers.poll_now(tenant, within=POLL_WAIT)
    except NothingHeld as exc:
        raise Problem(409, "nothing-held", "Nothing held", str(exc)) from None
    except HoldChanged as exc:
        raise Problem(409, "hold-changed", "Another listing is held", str(exc)) from None
    except NotPolled as exc:
        raise Problem(
            503, "tenant-moving", "Tenant changing owner", f"{exc}; try again",
            headers={"Retry-After": "1"},
        ) from None  # fmt: skip
    except AskTimeout as exc:
        if exc.taken:
            raise Problem(
                504, "directory-timeout", "Not done in time",
                f"{exc}: /status.json (tenants[].directory) says when it is",
            ) from None  # fmt: skip
        raise Problem(
            503, "directory-busy", "Directory poll under way", f"{exc}; try again",
            headers={"Retry-After": "5"},
        ) from None  # fmt: skip
    except JournalError as exc:
        raise Problem(
            503, "journal-unavailable", "The journal refused the commit", f"journal: {exc}"
        ) from None
    answer["directory"] = pollers.states[tenant].to_status().to_json()
    return answer


def _summary(answer: dict[str, Any]) -> dict[str, Any]:
    """The audit line's result: what was committed or found (counts only)."""
    if "confirmed" in answer:
        return {"events": answer.get("events"), **answer["confirmed"]}
    return {"outcome": answer.get("outcome")}


def _problem_of(owner: str, status: int, body: dict[str, Any]) -> Problem:
    """The owner's problem, as this replica's answer (a refused token is this replica's)."""
    if status in (401, 403):
        return Problem(
            502, "peer-refused", "The owning replica refused this replica",
            f"replica {owner} answered {status}: is its [http] admin_token the same?",
        )  # fmt: skip
    kind = str(body.get("type", "")).removeprefix(TYPE_PREFIX) or "peer-error"
    title = str(body.get("title") or "The owning replica refused")
    headers = {"Retry-After": "1"} if status == 503 else None
    return Problem(status, kind, title, str(body.get("detail") or title), headers=headers)
