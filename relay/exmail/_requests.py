"""Request models of the write operations: validated on construction, rendered to form params.

Each model checks the protocol's documented limits (:mod:`relay.exmail._validation`)
when it is built, so an invalid request raises
:class:`~relay.exmail._exceptions.InvalidRequest` before anything is sent. ``params()``
renders the documented parameter spellings, lists as repeated parameters
(``Slave=a&Slave=b``), in the order the documents list them.

The fields' types carry the same limits as JSON Schema keywords (the patterns and bounds
of :mod:`relay.exmail._validation`, ``additionalProperties: false``, ``party/sync``'s
``SrcPath`` required for MOD), so the gateway's OpenAPI document, built from these
models, refuses exactly what the checks refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from relay.exmail import _validation as v
from relay.exmail._exceptions import InvalidRequest
from relay.exmail._models import Gender, GroupStatus, OpenType, SyncAction
from relay.exmail._validation import EmailAddress, NotBlank, PartyPath, PartyPathOrRoot

__all__ = [
    "GroupAddRequest",
    "GroupAllowListRequest",
    "GroupMembersRequest",
    "Params",
    "PartySyncRequest",
    "UserSyncRequest",
]

Params = list[tuple[str, str]]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    def params(self) -> Params:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class UserSyncRequest(_Request):
    """``user/sync``: add (2), modify (3) or delete (1) an account."""

    action: SyncAction
    alias: EmailAddress
    name: str | None = None
    gender: Literal[Gender.MALE, Gender.FEMALE] | None = None
    position: str | None = None
    tel: str | None = None
    mobile: str | None = None
    ext_id: str | None = None
    password: SecretStr | None = None
    md5: bool | None = None
    party_paths: tuple[PartyPathOrRoot, ...] | None = None
    slaves: Annotated[tuple[EmailAddress, ...], Field(max_length=v.MAX_SLAVES)] | None = None
    open_type: OpenType | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["action"] = v.check_action(data.get("action"))
        data["alias"] = v.check_email("Alias", str(data.get("alias", "")))
        if data.get("slaves") is not None:
            data["slaves"] = v.check_slaves(_as_list(data["slaves"], "Slave"))
        if data.get("party_paths") is not None:
            paths = _as_list(data["party_paths"], "PartyPath")
            data["party_paths"] = tuple(v.check_party_path("PartyPath", p) for p in paths)
        if data.get("gender") is not None:
            data["gender"] = Gender(_code(data["gender"], "Gender", {1, 2}))
        if data.get("open_type") is not None:
            data["open_type"] = OpenType(_code(data["open_type"], "OpenType", {0, 1, 2}))
        return data

    def params(self) -> Params:
        out: Params = [("Action", str(int(self.action))), ("Alias", self.alias)]
        for key, value in (
            ("Name", self.name),
            ("Gender", None if self.gender is None else str(int(self.gender))),
            ("Position", self.position),
            ("Tel", self.tel),
            ("Mobile", self.mobile),
            ("ExtId", self.ext_id),
            ("Password", None if self.password is None else self.password.get_secret_value()),
            ("Md5", None if self.md5 is None else str(int(self.md5))),
        ):
            if value is not None:
                out.append((key, value))
        out += [("PartyPath", path) for path in self.party_paths or ()]
        out += [("Slave", slave) for slave in self.slaves or ()]
        if self.open_type is not None:
            out.append(("OpenType", str(int(self.open_type))))
        return out


class PartySyncRequest(_Request):
    """``party/sync``: DEL/ADD take ``DstPath`` only; MOD moves ``SrcPath`` to ``DstPath``."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"action": {"const": 3}}, "required": ["action"]},
            "then": {"required": ["src_path"], "properties": {"src_path": {"type": "string"}}},
        }
    )

    action: SyncAction
    src_path: PartyPath | None = Field(default=None, description="required for MOD (3)")
    dst_path: PartyPath

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        action = data["action"] = v.check_action(data.get("action"))
        if data.get("dst_path") is None:
            raise InvalidRequest("party/sync needs DstPath")
        data["dst_path"] = v.check_party_path("DstPath", str(data["dst_path"]), allow_root=False)
        if data.get("src_path") is not None:  # checked even where it is not used
            data["src_path"] = v.check_party_path(
                "SrcPath", str(data["src_path"]), allow_root=False
            )
        if action is SyncAction.MODIFY and data.get("src_path") is None:
            raise InvalidRequest("party/sync MOD needs both SrcPath and DstPath")
        if action is not SyncAction.MODIFY:
            data["src_path"] = None
        return data

    def params(self) -> Params:
        out: Params = [("Action", str(int(self.action)))]
        if self.src_path is not None:
            out.append(("SrcPath", self.src_path))
        out.append(("DstPath", self.dst_path))
        return out


class GroupAddRequest(_Request):
    """``group/add``: ``group_admin`` is the group's own (not yet existing) address."""

    name: NotBlank
    admin: EmailAddress
    status: GroupStatus
    members: tuple[EmailAddress, ...]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        v.check_not_blank("group_name", str(data.get("name", "")))
        data["admin"] = v.check_email("group_admin", str(data.get("admin", "")))
        data["status"] = v.check_group_status(str(data.get("status", "")))
        data["members"] = v.check_emails("members", _as_list(data.get("members", ()), "members"))
        return data

    def params(self) -> Params:
        return [
            ("group_name", self.name),
            ("group_admin", self.admin),
            ("status", self.status.value),
            *(("members", member) for member in self.members),
        ]


class GroupMembersRequest(_Request):
    """``group/addmember`` and ``group/deletemember``."""

    alias: EmailAddress
    members: Annotated[tuple[EmailAddress, ...], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["alias"] = v.check_email("group_alias", str(data.get("alias", "")))
        members = v.check_emails("members", _as_list(data.get("members", ()), "members"))
        if not members:
            raise InvalidRequest("members must name at least one address")
        data["members"] = members
        return data

    def params(self) -> Params:
        return [("group_alias", self.alias), *(("members", m) for m in self.members)]


class GroupAllowListRequest(_Request):
    """``group/addallowlist`` and ``group/delallowlist`` (v1.4): a comma-separated list."""

    alias: EmailAddress
    allow_list: Annotated[tuple[EmailAddress, ...], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data["alias"] = v.check_email("group_alias", str(data.get("alias", "")))
        raw = data.get("allow_list", ())
        # The protocol's spelling, one comma-separated string, may end in a stray comma.
        items = (
            [i.strip() for i in raw.split(",") if i.strip()]
            if isinstance(raw, str)
            else _as_list(raw, "allow_list")
        )
        allow = v.check_emails("allow_list", items)
        if not allow:
            raise InvalidRequest("allow_list must name at least one address")
        data["allow_list"] = allow
        return data

    def params(self) -> Params:
        return [("group_alias", self.alias), ("allow_list", ",".join(self.allow_list))]


def _as_list(value: Any, param: str) -> list[str]:
    if isinstance(value, str):
        # A lone string is almost always a mistake for a one-element list.
        return [value]
    if not isinstance(value, Sequence | set | frozenset | tuple):
        raise InvalidRequest(f"{param} must be a list of strings")
    return [str(item) for item in value]


def _code(value: Any, param: str, allowed: set[int]) -> int:
    try:
        code = int(str(value).strip())
    except ValueError:
        code = -1
    if code not in allowed:
        choices = ", ".join(str(c) for c in sorted(allowed))
        raise InvalidRequest(f"{param} must be one of {choices}, got {value!r}")
    return code
