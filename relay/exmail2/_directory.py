"""The directory app's operations (通讯录管理): departments, members, mail groups, tags.

One typed method per operation of the notes §4, built on :class:`Caller`; requests are
checked by :mod:`relay.exmail2._requests` before anything is sent, answers read by the
tolerant models. Department ids are Python ints end to end (64-bit, exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import SecretStr

from relay.exmail._models import _Tolerant
from relay.exmail2 import _requests as r
from relay.exmail2._calls import Caller, field, models
from relay.exmail2._decode import decode_model
from relay.exmail2._models import (
    AllowType,
    CheckEntry,
    Department,
    Group,
    Int64,
    Member,
    MemberBrief,
    Tag,
    TagChange,
    TagMembers,
)

__all__ = ["DirectoryCalls"]


class _Id(_Tolerant):
    value: Int64


def _id(operation: str, answer: dict[str, Any], key: str) -> int:
    """The id a create answers (``id``, ``tagid``): an exact int, else malformed."""
    return decode_model(operation, {"value": field(answer, key)}, _Id).value


class DirectoryCalls(Caller):
    # -- departments -------------------------------------------------------------

    async def department_create(
        self, name: str, parentid: int = 1, *, order: int | None = None
    ) -> int:
        """Create a department under ``parentid`` (1: the root); its new id."""
        body = r.department_body(name=name, parentid=parentid, order=order)
        return _id("department/create", await self._call("department/create", body=body), "id")

    async def department_update(
        self,
        id: int,
        *,
        name: str | None = None,
        parentid: int | None = None,
        order: int | None = None,
    ) -> None:
        """Rename, move or reorder a department; omitted fields are left unchanged."""
        body = r.department_body(id=id, name=name, parentid=parentid, order=order)
        await self._call("department/update", body=body)

    async def department_delete(self, id: int) -> None:
        """Delete a department (not the root, nor one with members or sub-departments)."""
        query = [("id", str(r.check_department_id("id", id)))]
        await self._call("department/delete", query=query)

    async def department_list(self, id: int | None = None) -> list[Department]:
        """The department ``id`` and its sub-departments (``None``: the whole tree).

        Whether the server lists every descendant or only direct children is not known
        (notes §11 q6): callers get what it sends, and :attr:`Department.parentid` lets
        them rebuild the tree either way."""
        query = [] if id is None else [("id", str(r.check_department_id("id", id)))]
        answer = await self._call("department/list", query=query)
        return models("department/list", answer, "department", Department)

    async def department_search(self, name: str, *, fuzzy: bool = False) -> list[Department]:
        """Departments named ``name`` (``fuzzy``: containing it), each with its ``path``."""
        body = {"name": r.department_name(name), "fuzzy": 1 if fuzzy else 0}
        answer = await self._call("department/search", body=body)
        return models("department/search", answer, "department", Department)

    # -- members -----------------------------------------------------------------

    async def user_create(
        self,
        userid: str,
        name: str,
        department: Sequence[int],
        password: str | SecretStr,
        *,
        position: str | None = None,
        mobile: str | None = None,
        tel: str | None = None,
        extid: str | None = None,
        gender: int | None = None,
        slaves: Sequence[str] | None = None,
        cpwd_login: int | bool | None = None,
    ) -> None:
        body = r.member_body(
            userid,
            create=True,
            name=name,
            department=department,
            password=password,
            position=position,
            mobile=mobile,
            tel=tel,
            extid=extid,
            gender=gender,
            slaves=slaves,
            cpwd_login=cpwd_login,
        )
        await self._call("user/create", body=body)

    async def user_update(
        self,
        userid: str,
        *,
        name: str | None = None,
        department: Sequence[int] | None = None,
        password: str | SecretStr | None = None,
        position: str | None = None,
        mobile: str | None = None,
        tel: str | None = None,
        extid: str | None = None,
        gender: int | None = None,
        slaves: Sequence[str] | None = None,
        cpwd_login: int | bool | None = None,
        enable: int | bool | None = None,
    ) -> None:
        """Change a member; omitted (``None``) fields are not sent and stay unchanged."""
        body = r.member_body(
            userid,
            create=False,
            name=name,
            department=department,
            password=password,
            position=position,
            mobile=mobile,
            tel=tel,
            extid=extid,
            gender=gender,
            slaves=slaves,
            cpwd_login=cpwd_login,
            enable=enable,
        )
        await self._call("user/update", body=body)

    async def user_delete(self, userid: str) -> None:
        await self._call("user/delete", query=[("userid", r.check_userid("userid", userid))])

    async def user_get(self, userid: str) -> Member:
        query = [("userid", r.check_userid("userid", userid))]
        return decode_model("user/get", await self._call("user/get", query=query), Member)

    def _list_query(self, department_id: int, fetch_child: bool) -> list[tuple[str, str]]:
        department_id = r.check_department_id("department_id", department_id)
        return [("department_id", str(department_id)), ("fetch_child", "1" if fetch_child else "0")]

    async def user_simplelist(
        self, department_id: int = 1, *, fetch_child: bool = False
    ) -> list[MemberBrief]:
        """Members of a department (``fetch_child``: and of its sub-departments)."""
        query = self._list_query(department_id, fetch_child)
        answer = await self._call("user/simplelist", query=query)
        return models("user/simplelist", answer, "userlist", MemberBrief)

    async def user_list(self, department_id: int = 1, *, fetch_child: bool = False) -> list[Member]:
        """Members with every field; ``user_list(1, fetch_child=True)``: the whole company."""
        query = self._list_query(department_id, fetch_child)
        answer = await self._call("user/list", query=query)
        return models("user/list", answer, "userlist", Member)

    async def user_batchcheck(self, userids: Iterable[str]) -> list[CheckEntry]:
        """What holds each address (-1 invalid, 0 free, 1 account, 2 alias, 3 group); more
        than 20 are split into several calls. Names are not checked: that is its job."""
        items = [u.strip() for u in userids]
        out: list[CheckEntry] = []
        for start in range(0, len(items), r.MAX_BATCHCHECK):
            chunk = items[start : start + r.MAX_BATCHCHECK]
            answer = await self._call("user/batchcheck", body={"userlist": chunk})
            out += models("user/batchcheck", answer, "list", CheckEntry)
        return out

    # -- mail groups -------------------------------------------------------------

    async def group_create(
        self,
        groupid: str,
        groupname: str,
        allow_type: AllowType | int,
        *,
        userlist: Sequence[str] | None = None,
        grouplist: Sequence[str] | None = None,
        department: Sequence[int] | None = None,
        allow_userlist: Sequence[str] | None = None,
    ) -> None:
        body = r.group_body(
            groupid,
            create=True,
            groupname=groupname,
            allow_type=allow_type,
            userlist=userlist,
            grouplist=grouplist,
            department=department,
            allow_userlist=allow_userlist,
        )
        await self._call("group/create", body=body)

    async def group_update(
        self,
        groupid: str,
        *,
        groupname: str | None = None,
        allow_type: AllowType | int | None = None,
        userlist: Sequence[str] | None = None,
        grouplist: Sequence[str] | None = None,
        department: Sequence[int] | None = None,
        allow_userlist: Sequence[str] | None = None,
    ) -> None:
        """Replace the given lists whole (the API has no add/remove member call)."""
        body = r.group_body(
            groupid,
            create=False,
            groupname=groupname,
            allow_type=allow_type,
            userlist=userlist,
            grouplist=grouplist,
            department=department,
            allow_userlist=allow_userlist,
        )
        await self._call("group/update", body=body)

    async def group_delete(self, groupid: str) -> None:
        await self._call("group/delete", query=[("groupid", r.check_userid("groupid", groupid))])

    async def group_get(self, groupid: str) -> Group:
        query = [("groupid", r.check_userid("groupid", groupid))]
        return decode_model("group/get", await self._call("group/get", query=query), Group)

    # -- tags --------------------------------------------------------------------

    async def tag_create(self, tagname: str, *, tagid: int | None = None) -> int:
        """Create a tag (``tagid`` omitted: the server numbers it); its id."""
        body: dict[str, Any] = {"tagname": r.tag_name(tagname)}
        if tagid is not None:
            body["tagid"] = r.check_tagid(tagid)
        return _id("tag/create", await self._call("tag/create", body=body), "tagid")

    async def tag_update(self, tagid: int, tagname: str) -> None:
        body = {"tagid": r.check_tagid(tagid), "tagname": r.tag_name(tagname)}
        await self._call("tag/update", body=body)

    async def tag_delete(self, tagid: int) -> None:
        await self._call("tag/delete", query=[("tagid", str(r.check_tagid(tagid)))])

    async def tag_get(self, tagid: int) -> TagMembers:
        answer = await self._call("tag/get", query=[("tagid", str(r.check_tagid(tagid)))])
        return decode_model("tag/get", answer, TagMembers)

    async def tag_add_users(
        self, tagid: int, *, userlist: Sequence[str] = (), partylist: Sequence[int] = ()
    ) -> TagChange:
        """Tag members and departments; what the server refused comes back (all refused:
        ``ApiError`` 40070)."""
        body = r.tag_members_body(tagid, userlist, partylist)
        return decode_model(
            "tag/addtagusers", await self._call("tag/addtagusers", body=body), TagChange
        )

    async def tag_delete_users(
        self, tagid: int, *, userlist: Sequence[str] = (), partylist: Sequence[int] = ()
    ) -> TagChange:
        """Untag members and departments (all refused: ``ApiError`` 40031)."""
        body = r.tag_members_body(tagid, userlist, partylist)
        return decode_model(
            "tag/deltagusers", await self._call("tag/deltagusers", body=body), TagChange
        )

    async def tag_list(self) -> list[Tag]:
        return models("tag/list", await self._call("tag/list"), "taglist", Tag)
