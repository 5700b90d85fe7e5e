"""The JSON bodies of the gateway's routes, as pydantic models.

The handlers build their answers from these models and :mod:`relay.gateway.openapi`
describes the routes with their JSON Schemas (``model_json_schema``), so the document
and the answers cannot drift apart. Upstream answers (``user/get``, ``openapi/...``) are
the client's own models (:mod:`relay.exmail`) or the upstream JSON as is.

The request bodies state every limit the gateway enforces: addresses and department
paths carry the client's patterns and lengths (:mod:`relay.exmail.validation`), and a
body that refuses unknown keys says so (``additionalProperties: false``). The SSO and
refresh bodies ignore keys they do not know, so they leave ``additionalProperties`` open.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.exmail import User
from relay.exmail import validation as v

__all__ = [
    "AliasBody",
    "CheckBody",
    "PartyBody",
    "ProblemBody",
    "RefreshBody",
    "SsoBody",
    "SsoUrl",
    "TenantList",
    "TenantState",
    "TokenAnswer",
    "UnreadAnswer",
    "UserAnswer",
    "VerBody",
]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Strict(_Body):
    """A body whose unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class TenantState(_Body):
    name: str
    state: str = Field(
        description="the tenant's listener state: connected, backoff, ...; callback for a "
        "tenant of the second API (no listener: its new mail comes by callback)"
    )


class TenantList(_Body):
    """``GET /v1/tenants``: the tenants this client may use."""

    tenants: list[TenantState]


class UnreadAnswer(_Body):
    """``GET .../unread``: a user's unread count, where it came from and how old it is."""

    email: str
    unread: int
    source: Literal["listen", "callback", "cache", "upstream"] = Field(
        description="listen: pushed by listen; callback: sent by the second API's new-mail "
        "callback (api2 tenants); cache: an earlier upstream answer; upstream: asked "
        "mail/newcount now"
    )
    age: float = Field(description="seconds since the count was true")


class SsoBody(_Body):
    """``POST .../sso``: whose mailbox to log into (other keys are ignored)."""

    email: v.EmailAddress


class SsoUrl(_Body):
    url: str = Field(description="the login URL with its one-time ticket")
    expires_in: int = Field(description="seconds the ticket is good for")


class TokenAnswer(_Body):
    """The tenant's one access token (a second-API tenant: the token of one of its
    applications), borrowed (scope ``token``)."""

    access_token: str
    expires_in: int = Field(description="seconds until the relay renews it: come back then")


class RefreshBody(_Body):
    """``POST .../token/refresh``: the token Exmail refused (compare-and-swap; other keys
    are ignored)."""

    stale: str = Field(min_length=1)


class ProblemBody(_Body):
    """RFC 9457 problem details; every error of the gateway."""

    type: str = Field(description="urn:exmail-relay:problem:<kind>")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errcode: str | None = Field(default=None, description="Exmail's errcode, when it refused")
    scope: str | None = Field(default=None, description="the missing scope (403)")
    owner: str | None = Field(default=None, description="the owning replica (421, 508)")
    limit: int | None = Field(
        default=None, description="the largest body read, [gateway] max_body_bytes (413)"
    )
    api: Literal["openapi", "api2"] | None = Field(
        default=None, description="the tenant's Exmail API (404 operation-not-in-api)"
    )


class UserAnswer(User):
    """``GET .../users/{email}``: ``user/get`` as typed JSON, one shape for both APIs. The
    second API's member is mapped onto the first's keys (``userid`` -> ``alias``,
    ``slaves`` -> ``slave_list``, ``extid`` -> ``ext_id``, ``enable`` -> ``open_type``
    1/2); the last three keys are the second API's only."""

    department: list[int] | None = Field(
        default=None,
        description="api2 tenants only: the member's department ids (64-bit; party_list "
        "stays empty, that API names no department paths)",
    )
    enable: int | None = Field(default=None, description="api2 tenants only: 1 enabled, 0 not")
    cpwd_login: int | None = Field(
        default=None, description="api2 tenants only: 1 must change the password at next login"
    )


class AliasBody(_Strict):
    """One account (``Alias``)."""

    alias: v.EmailAddress


class VerBody(_Strict):
    """``user/list``: changes since version ``ver`` (0: everything)."""

    ver: int = Field(ge=0)


class CheckBody(_Strict):
    """``user/check``: 1 to 20 addresses (a JSON array, or ``email`` repeated in a form)."""

    email: list[v.EmailAddress] = Field(min_length=1, max_length=v.MAX_CHECK_EMAILS)


class PartyBody(_Strict):
    """A department path (empty, ``/`` or absent: the root)."""

    party_path: v.PartyPathOrRoot | None = None
