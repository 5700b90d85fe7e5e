"""Typed views of every response body of the BizMail OpenApi (both protocol texts).

The models read real-world payloads, not only well-formed ones, because the
protocol's own documents show typos that a server may well reproduce:

- keys are matched by :func:`~relay.exmail._json.key_form`: case-insensitively, with
  spaces and underscores ignored (``"NewCount "``, ``authkey``, ``auth_key``);
- string values are stripped of stray spaces (``" test@gzdev.com "``);
- numbers may arrive as strings (``"NewCount": "2"``, ``"Ver": "1364460338051"``) and
  strings as numbers (``"ExtId": 100``);
- unknown keys are ignored.

``user/list`` action codes differ between the texts (authority: 1 Add, 2 Edit, 3 Del;
v1.4: 1 DEL, 2 ADD, 3 MOD); the mapping is chosen per call through the validation
context ``{"action_codes": "authority" | "v1.4"}`` and an unmapped code becomes
:attr:`UserAction.UNKNOWN` rather than failing the whole list.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from relay.exmail._json import key_form

__all__ = [
    "ACTION_CODE_MAPS",
    "AccountType",
    "ActionCodes",
    "AuthKeyResponse",
    "CheckResponse",
    "CheckResult",
    "ErrorBody",
    "Gender",
    "GroupStatus",
    "NewCount",
    "OpenType",
    "SyncAction",
    "TokenResponse",
    "User",
    "UserAction",
    "UserList",
    "UserListEntry",
    "ValueItem",
    "ValueList",
]


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _no_whitespace(value: Any) -> Any:
    # An authkey is hex; the documents' examples wrap it across lines.
    return "".join(value.split()) if isinstance(value, str) else value


def _to_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return str(value)
    return value


def _split_commas(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Int = Annotated[int, BeforeValidator(_strip)]


class Gender(IntEnum):
    UNSET = 0
    MALE = 1
    FEMALE = 2


class OpenType(IntEnum):
    """Account state: ``user/get`` reports 1 or 2; ``user/sync`` also takes 0 (leave as is)."""

    UNCHANGED = 0
    ENABLED = 1
    DISABLED = 2


class SyncAction(IntEnum):
    """``Action`` of ``user/sync`` and ``party/sync`` (the same in both texts)."""

    DELETE = 1
    ADD = 2
    MODIFY = 3


class UserAction(Enum):
    """What happened to an account, as reported by ``user/list``."""

    ADDED = "added"
    UPDATED = "updated"
    DELETED = "deleted"
    UNKNOWN = "unknown"


class AccountType(IntEnum):
    """``user/check`` result type."""

    INVALID = -1
    FREE = 0
    PRIMARY = 1
    ALIAS = 2
    GROUP = 3


class GroupStatus(StrEnum):
    """Who may send to a mail group (``group/add`` ``status``)."""

    ALL = "all"
    INNER = "inner"
    GROUP = "group"
    LIST = "list"


ActionCodes = Literal["authority", "v1.4"]

ACTION_CODE_MAPS: Mapping[str, Mapping[int, UserAction]] = {
    "authority": {1: UserAction.ADDED, 2: UserAction.UPDATED, 3: UserAction.DELETED},
    "v1.4": {1: UserAction.DELETED, 2: UserAction.ADDED, 3: UserAction.UPDATED},
}


class _Tolerant(BaseModel):
    """Base of every response model: tolerant key matching, stripping and coercion."""

    model_config = ConfigDict(
        frozen=True,
        str_strip_whitespace=True,
        coerce_numbers_to_str=True,
        extra="ignore",
    )
    # Extra key forms (as produced by ``key_form``) that map onto a field name.
    key_aliases: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _match_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        wanted = {key_form(name): name for name in cls.model_fields}
        wanted.update(cls.key_aliases)
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = wanted.get(key_form(str(key)))
            if name is not None and name not in out:
                out[name] = value
        return cls._complete(out, info.context)

    @classmethod
    def _complete(cls, data: dict[str, Any], context: Any) -> dict[str, Any]:
        """Hook for subclasses that derive fields from others (after key matching)."""
        return data


class TokenResponse(_Tolerant):
    """``/cgi-bin/token``: the access token is held as a secret."""

    access_token: Annotated[SecretStr, BeforeValidator(_strip)]
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: Int = 86400
    refresh_token: str = ""


class ErrorBody(_Tolerant):
    """``{"errcode": "1200", "error": "invalid_token"}``; ``errcode`` kept as a string."""

    errcode: str
    error: Annotated[str, BeforeValidator(_to_text)] = ""
    detail: Annotated[str, BeforeValidator(_to_text)] = ""


class AuthKeyResponse(_Tolerant):
    """``mail/authkey``: ``AuthKey`` (authority), ``authkey`` (v1.4) or ``auth_key``."""

    auth_key: Annotated[str, BeforeValidator(_no_whitespace)]


class ValueItem(_Tolerant):
    value: str = ""


class ValueList(_Tolerant):
    """``{"Count": n, "List": [{"Value": ...}]}``: party/list, partyuser/list, PartyList."""

    key_aliases: ClassVar[Mapping[str, str]] = {"list": "entries"}
    count: Int = 0
    entries: tuple[ValueItem, ...] = ()

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(item.value for item in self.entries)


class User(_Tolerant):
    """``user/get``: one account's profile."""

    alias: str
    name: str = ""
    gender: Gender = Gender.UNSET
    slave_list: Annotated[tuple[str, ...], BeforeValidator(_split_commas)] = ()
    position: str = ""
    tel: str = ""
    mobile: str = ""
    ext_id: str = ""
    party_list: ValueList = ValueList()
    open_type: OpenType | None = None

    @property
    def parties(self) -> tuple[str, ...]:
        """Department paths, ``/``-separated, root omitted."""
        return self.party_list.values


class UserListEntry(_Tolerant):
    """One account changed since the requested version; ``code`` is the raw Action."""

    alias: str
    code: Int
    action: UserAction = UserAction.UNKNOWN

    @classmethod
    def _complete(cls, data: dict[str, Any], context: Any) -> dict[str, Any]:
        codes = "authority"
        if isinstance(context, Mapping):
            codes = str(context.get("action_codes", codes))
        raw = data.get("action")
        data.pop("action", None)
        if raw is not None:
            data["code"] = raw
            try:
                data["action"] = ACTION_CODE_MAPS[codes].get(
                    int(str(raw).strip()), UserAction.UNKNOWN
                )
            except ValueError:
                data["action"] = UserAction.UNKNOWN
        return data


class UserList(_Tolerant):
    """``user/list``: the new directory version and what changed since the old one."""

    key_aliases: ClassVar[Mapping[str, str]] = {"list": "entries"}
    ver: Int
    count: Int = 0
    entries: tuple[UserListEntry, ...] = ()


class NewCount(_Tolerant):
    """``mail/newcount``: unread mail of one account."""

    alias: str = ""
    new_count: Int


class CheckResult(_Tolerant):
    """One ``user/check`` entry: whether an address is free, and what holds it if not."""

    email: str
    type: AccountType


class CheckResponse(_Tolerant):
    key_aliases: ClassVar[Mapping[str, str]] = {"list": "entries"}
    count: Int = 0
    entries: tuple[CheckResult, ...] = ()
