"""The second API's applications and operations: which token each call needs, and how it goes.

Every call of ``api.exmail.qq.com/cgi-bin/`` belongs to one of five applications of the
admin console's 应用中心, each with its own secret and so its own token (notes §2):

===============  ==============  ===========================================
:class:`App`     console name    operations
===============  ==============  ===========================================
``directory``    通讯录管理       ``department/*``, ``user/*``, ``group/*``, ``tag/*``
``sso``          单点登录         ``service/get_login_url``
``newmail``      新邮件提醒       ``mail/newcount`` (and the callback settings)
``logs``         日志查询         ``log/*``
``settings``     功能设置         ``useroption/*``
===============  ==============  ===========================================

:data:`OPERATIONS` maps each operation to its app, its HTTP method (reads and deletes are
GET with a query; writes and searches are POST with a JSON body, notes §1) and whether it
changes nothing (``read``: safe to retry on a transient fault). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["DEFAULT_BASE_URL", "OPERATIONS", "App", "Operation", "app_of"]

DEFAULT_BASE_URL = "https://api.exmail.qq.com/cgi-bin/"


class App(StrEnum):
    """The five applications; the value is the name used in configuration and docs."""

    DIRECTORY = "directory"
    SSO = "sso"
    NEWMAIL = "newmail"
    LOGS = "logs"
    SETTINGS = "settings"


@dataclass(frozen=True, slots=True)
class Operation:
    app: App
    method: Literal["GET", "POST"]
    read: bool


def _op(app: App, method: Literal["GET", "POST"], read: bool) -> Operation:
    return Operation(app, method, read)


_D, _S, _N, _L, _F = App.DIRECTORY, App.SSO, App.NEWMAIL, App.LOGS, App.SETTINGS

OPERATIONS: dict[str, Operation] = {
    "department/create": _op(_D, "POST", False),
    "department/update": _op(_D, "POST", False),
    "department/delete": _op(_D, "GET", False),
    "department/list": _op(_D, "GET", True),
    "department/search": _op(_D, "POST", True),
    "user/create": _op(_D, "POST", False),
    "user/update": _op(_D, "POST", False),
    "user/delete": _op(_D, "GET", False),
    "user/get": _op(_D, "GET", True),
    "user/simplelist": _op(_D, "GET", True),
    "user/list": _op(_D, "GET", True),
    "user/batchcheck": _op(_D, "POST", True),
    "group/create": _op(_D, "POST", False),
    "group/update": _op(_D, "POST", False),
    "group/delete": _op(_D, "GET", False),
    "group/get": _op(_D, "GET", True),
    "tag/create": _op(_D, "POST", False),
    "tag/update": _op(_D, "POST", False),
    "tag/delete": _op(_D, "GET", False),
    "tag/get": _op(_D, "GET", True),
    "tag/addtagusers": _op(_D, "POST", False),
    "tag/deltagusers": _op(_D, "POST", False),
    "tag/list": _op(_D, "GET", True),
    "service/get_login_url": _op(_S, "GET", True),
    "mail/newcount": _op(_N, "GET", True),
    "log/mailstatus": _op(_L, "POST", True),
    "log/mail": _op(_L, "POST", True),
    "log/login": _op(_L, "POST", True),
    "log/batchjob": _op(_L, "POST", True),
    "log/operation": _op(_L, "POST", True),
    "useroption/get": _op(_F, "POST", True),
    "useroption/update": _op(_F, "POST", False),
}
"""Every operation of the notes (§4-§8), by its path under the base URL."""


def app_of(operation: str) -> App | None:
    """The app whose token ``operation`` needs (``None``: not an operation of the API)."""
    found = OPERATIONS.get(operation.strip().strip("/").lower())
    return None if found is None else found.app
