"""An emulator of both Tencent Exmail APIs, for tests, benchmarks and the demo.

It serves, on one loopback port: the BizMail OpenApi (``/cgi-bin/token``, ``/openapi/...``)
from an in-memory ``EmulatorState``; the second API (``/cgi-bin/gettoken`` and its
operations under ``/cgi-bin/``) from an ``Api2State``; the SSO login page of both
(``/cgi-bin/login``); and a control API under ``/_emulator/`` (see ``docs/emulator.md``)::

    async with Emulator(port=0) as emu:
        emu.api_url, emu.token_url, emu.login_url, emu.state
        emu.api2_url, emu.api2   # the second API's base URL and its state

The modules: ``_model`` holds the data (companies, accounts, groups); ``_state`` and
``_directory`` hold the protocol's rules with no I/O; ``_seed`` reads seeds; ``_listen``
holds long polls; ``_listenlog`` records them per company (overlaps and gaps, with the
interval math in ``_intervals``); ``_faults`` arms injected faults; ``_server`` and
``_control`` are the aiohttp handlers, and ``_http`` holds the app keys and JSON answer
they share. The second API: ``_api2seed`` (seeds), ``_api2model`` (data, and the
``on_mail``/``on_unread`` seams of the new-mail callback), ``_api2directory`` and
``_api2state`` (rules, no I/O), ``_api2server`` and ``_api2control`` (handlers),
``_api2callbacks`` (the new-mail callback sender ``_callback`` wired to the tenants,
``emu.callbacks``); ``_login``
is the login page of both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ._api2callbacks import CALLBACKS, CallbackHub
from ._api2model import MessageHook, Tenant2
from ._api2seed import (
    API2_APPS,
    Api2CallbackSeed,
    Api2DepartmentSeed,
    Api2GroupSeed,
    Api2TenantSeed,
    Api2UserSeed,
    demo_api2_tenant,
    parse_api2_tenant,
    parse_callback,
)
from ._api2state import TOKEN_ROTATIONS, Api2State, TokenRotation
from ._errors import Api2Error, ApiError, ControlError, EmulatorError, EmulatorSeedError
from ._http import LISTENS, REPLICA_HEADER, ListenFormat
from ._listenlog import Call, Gap, Listen, ListenLog, Outcome, Overlap, TokenFetch
from ._seed import (
    CompanySeed,
    GroupSeed,
    Seed,
    UserSeed,
    demo_seed,
    load_seed,
    parse_seed,
    tenant_key,
    tenants_seed,
)
from ._server import build_app
from ._state import ActionCodes, EmulatorState

__all__ = [
    "API2_APPS",
    "REPLICA_HEADER",
    "TOKEN_ROTATIONS",
    "Api2CallbackSeed",
    "Api2DepartmentSeed",
    "Api2Error",
    "Api2GroupSeed",
    "Api2State",
    "Api2TenantSeed",
    "Api2UserSeed",
    "ApiError",
    "Call",
    "CallbackHub",
    "CompanySeed",
    "ControlError",
    "Emulator",
    "EmulatorError",
    "EmulatorSeedError",
    "EmulatorState",
    "Gap",
    "GroupSeed",
    "Listen",
    "ListenLog",
    "MessageHook",
    "Outcome",
    "Overlap",
    "Seed",
    "Tenant2",
    "TokenFetch",
    "TokenRotation",
    "UserSeed",
    "build_app",
    "demo_api2_tenant",
    "demo_seed",
    "load_seed",
    "parse_api2_tenant",
    "parse_callback",
    "parse_seed",
    "tenant_key",
    "tenants_seed",
]

SeedSource = Seed | Mapping[str, Any] | str | os.PathLike[str] | None


def _resolve_seed(seed: SeedSource) -> Seed:
    if seed is None:
        return demo_seed()
    if isinstance(seed, Seed):
        return seed
    if isinstance(seed, Mapping):
        return parse_seed(seed)
    return load_seed(seed)


class Emulator:
    """The emulator served on ``host:port`` (``port=0``: any free port) while in ``async with``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: SeedSource = None,
        hold: float = 25.0,
        token_ttl: int = 7200,
        action_codes: ActionCodes = "authority",
        authkey_ttl: float = 300.0,
        max_pending: int = 10000,
        max_batch: int = 100,
        listen_format: ListenFormat = "array",
        redeliver: bool = False,
        listen_log: int = 1000,
        token_rotation: TokenRotation = "reuse_until_expiry",  # noqa: S107 - the second API's mode
        login_ttl: float = 300.0,
        max_log_days: int = 92,
    ) -> None:
        self.host = host
        self.port = port
        resolved = _resolve_seed(seed)
        self.api2 = Api2State(
            resolved.api2,
            token_ttl=token_ttl,
            token_rotation=token_rotation,
            login_ttl=login_ttl,
            max_log_days=max_log_days,
        )
        self.state = EmulatorState(
            resolved,
            token_ttl=token_ttl,
            action_codes=action_codes,
            authkey_ttl=authkey_ttl,
            max_pending=max_pending,
            redeliver=redeliver,
        )
        self.app = build_app(
            self.state,
            hold=hold,
            max_batch=max_batch,
            listen_format=listen_format,
            listen_log=listen_log,
            api2=self.api2,
        )
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._bound_port is not None else "not started"
        return f"<Emulator {where} {self.state!r}>"

    @property
    def base_url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("the emulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._bound_port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/openapi/"

    @property
    def token_url(self) -> str:
        return self.base_url + "/cgi-bin/token"

    @property
    def login_url(self) -> str:
        return self.base_url + "/cgi-bin/login"

    @property
    def api2_url(self) -> str:
        """The second API's base URL (``Exmail2Client(base_url=...)``)."""
        return self.base_url + "/cgi-bin/"

    @property
    def callbacks(self) -> CallbackHub:
        """The second API's callback sender: saved targets, deliveries, ``drain()``."""
        return self.app[CALLBACKS]

    @property
    def control_url(self) -> str:
        return self.base_url + "/_emulator/"

    # -- the listen log (see ``_listenlog``): times on ``time.monotonic()`` ------------------

    @property
    def listen_log(self) -> ListenLog:
        return self.app[LISTENS]

    def _admin(self, company: str | None) -> str | None:
        """An admin address or a domain -> the admin address; a second-API tenant's
        corpid -> itself (its key in the request log). ``KeyError`` if unknown."""
        if company is None:
            return None
        if company.strip() in self.api2.tenants:
            return company.strip()
        name = company.strip().lower()
        found = self.state.companies.get(name) or self.state.company_for_address(f"x@{name}")
        if found is None:
            raise KeyError(f"no company {company!r}")
        return found.admin

    def listens(self, company: str | None = None, *, since: float | None = None) -> list[Listen]:
        """Every listen (finished or open) of ``company`` (default: all) open after ``since``."""
        return self.listen_log.listens(self._admin(company), since=since)

    def overlaps(self, company: str | None = None, *, since: float | None = None) -> list[Overlap]:
        """Times two listens of one company were held at once by different replicas/tokens."""
        return self.listen_log.overlaps(self._admin(company), since=since)

    def gaps(
        self, company: str | None = None, *, since: float | None = None, min_seconds: float = 0.0
    ) -> list[Gap]:
        """Times with no listen open, per company (default: every company served)."""
        admin = self._admin(company)
        names = list(self.state.companies) if admin is None else [admin]
        return self.listen_log.gaps(names, since=since, min_seconds=min_seconds)

    def token_fetches(
        self, company: str | None = None, *, since: float | None = None
    ) -> list[TokenFetch]:
        return self.listen_log.token_fetches(self._admin(company), since=since)

    def calls(self, company: str | None = None, *, since: float | None = None) -> list[Call]:
        """OpenApi requests made with ``company``'s tokens (valid or not) since ``since``."""
        return self.listen_log.calls(self._admin(company), since=since)

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=4096, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._bound_port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
