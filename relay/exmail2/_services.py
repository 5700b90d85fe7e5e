"""The other four apps' operations: SSO, new-mail count, logs and feature settings.

One typed method per operation of the notes §5-§8, built on :class:`Caller`:

- ``service/get_login_url`` (单点登录): a one-time login URL, valid ``expires_in`` s;
- ``mail/newcount`` (新邮件提醒): a GET with ``userid`` in the query, dates only when
  given (what production clients send; the sources disagree on GET vs POST, §11 q5);
- ``log/*`` (日志查询): POST JSON with ``YYYY-MM-DD`` dates; every result is one list;
- ``useroption/*`` (功能设置): values are the strings ``"0"``/``"1"``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from relay.exmail._exceptions import InvalidRequest
from relay.exmail._models import _Tolerant
from relay.exmail2 import _requests as r
from relay.exmail2._calls import Caller, field, models
from relay.exmail2._decode import decode_model
from relay.exmail2._models import (
    BatchJobEntry,
    Int,
    LoginLogEntry,
    LoginUrl,
    MailLogEntry,
    MailStatus,
    OperationLogEntry,
    UserOption,
)

__all__ = ["ServiceCalls"]

Day = dt.date | str


class _Count(_Tolerant):
    count: Int


class ServiceCalls(Caller):
    # -- SSO and new mail --------------------------------------------------------

    async def get_login_url(self, userid: str) -> LoginUrl:
        """A one-time URL that logs ``userid`` into the webmail (``expires_in`` seconds)."""
        query = [("userid", r.check_userid("userid", userid))]
        answer = await self._call("service/get_login_url", query=query)
        return decode_model("service/get_login_url", answer, LoginUrl)

    async def mail_newcount(
        self, userid: str, *, begin_date: Day | None = None, end_date: Day | None = None
    ) -> int:
        """Unread mails of ``userid`` (between the dates, inclusive, when both are given)."""
        query = [("userid", r.check_userid("userid", userid))]
        if begin_date is not None or end_date is not None:
            query += list(r.date_range(begin_date, end_date).items())
        answer = await self._call("mail/newcount", query=query)
        return decode_model("mail/newcount", {"count": field(answer, "count")}, _Count).count

    # -- logs --------------------------------------------------------------------

    async def log_mailstatus(self, domain: str, begin_date: Day, end_date: Day) -> MailStatus:
        """How many mails the domain sent and received in the period."""
        body = {"domain": r.check_userid("domain", f"x@{domain}").partition("@")[2]}
        body.update(r.date_range(begin_date, end_date))
        answer = await self._call("log/mailstatus", body=body)
        return decode_model("log/mailstatus", answer, MailStatus)

    async def log_mail(
        self,
        begin_date: Day,
        end_date: Day,
        *,
        mailtype: int = 0,
        userid: str | None = None,
        subject: str | None = None,
    ) -> list[MailLogEntry]:
        """Mail traffic: ``mailtype`` 0 both ways, 1 sent, 2 received."""
        body: dict[str, Any] = r.date_range(begin_date, end_date)
        body["mailtype"] = _choice("mailtype", mailtype, (0, 1, 2))
        if userid is not None:
            body["userid"] = r.check_userid("userid", userid)
        if subject is not None:
            body["subject"] = subject
        return models("log/mail", await self._call("log/mail", body=body), "list", MailLogEntry)

    async def log_login(self, userid: str, begin_date: Day, end_date: Day) -> list[LoginLogEntry]:
        body: dict[str, Any] = {"userid": r.check_userid("userid", userid)}
        body.update(r.date_range(begin_date, end_date))
        answer = await self._call("log/login", body=body)
        return models("log/login", answer, "list", LoginLogEntry)

    async def log_batchjob(self, begin_date: Day, end_date: Day) -> list[BatchJobEntry]:
        answer = await self._call("log/batchjob", body=r.date_range(begin_date, end_date))
        return models("log/batchjob", answer, "list", BatchJobEntry)

    async def log_operation(
        self, begin_date: Day, end_date: Day, *, type: int = 1
    ) -> list[OperationLogEntry]:
        """Admin operations. ``type`` filters; "all" is 1 in the doc text and SUN, 0 in
        one mirror (§11 q7): pass what the tenant's server takes (default 1)."""
        body: dict[str, Any] = {"type": _choice("type", type, range(11))}
        body.update(r.date_range(begin_date, end_date))
        answer = await self._call("log/operation", body=body)
        return models("log/operation", answer, "list", OperationLogEntry)

    # -- feature settings --------------------------------------------------------

    async def useroption_get(
        self, userid: str, types: Iterable[int] = (1, 2, 3, 4)
    ) -> list[UserOption]:
        """The member's settings: 1 force secure login, 2 IMAP/SMTP, 3 POP/SMTP, 4 secure
        login enabled (read-only)."""
        body = {"userid": r.check_userid("userid", userid), "type": r.option_types(types)}
        answer = await self._call("useroption/get", body=body)
        return models("useroption/get", answer, "option", UserOption)

    async def useroption_update(self, userid: str, options: Mapping[int, str | bool | int]) -> None:
        """Set settings 1-3 (``{2: "1"}``; bools and 0/1 are sent as ``"0"``/``"1"``)."""
        await self._call("useroption/update", body=r.options_body(userid, options))


def _choice(param: str, value: Any, allowed: Iterable[int]) -> int:
    choices = tuple(allowed)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise InvalidRequest(f"{param} must be one of {', '.join(map(str, choices))}")
    return value
