"""The second API's mail-group and tag rules (notes §4.3, §4.4). No I/O.

Like ``_api2directory``: each function takes a ``Tenant2`` and the request's parameters,
checks the rules, applies the change and returns the answer's payload. Group codes are
the emulator's choice (no source gives any): an unknown group is 60111, an address in use
60102. Tag codes are WeCom's (40068 invalid tagid, 40071 name exists, 40072 name length)
except 40070 and 40031, which the doc gives for "all list invalid".
"""

from __future__ import annotations

from ._api2directory import Params, address, bad, ids, integer, log_operation, strings, text
from ._api2model import Group2, Tag2, Tenant2
from ._errors import Api2Error

__all__ = [
    "group_create",
    "group_delete",
    "group_get",
    "group_update",
    "tag_create",
    "tag_delete",
    "tag_get",
    "tag_list",
    "tag_members",
    "tag_update",
]


# -- mail groups --------------------------------------------------------------------------


def _group_fields(tenant: Tenant2, group: Group2, params: Params) -> None:
    if "groupname" in params:
        group.groupname = text(params, "groupname")
    if "allow_type" in params:
        allow = integer(params, "allow_type")
        if allow not in (0, 1, 2, 3):
            raise bad("allow_type must be 0, 1, 2 or 3")
        group.allow_type = allow
    if "userlist" in params:
        users = strings(params, "userlist")
        for user in users:
            tenant.member(user)
        group.userlist = users
    if "grouplist" in params:
        groups = strings(params, "grouplist")
        if any(g not in tenant.groups or g == group.groupid for g in groups):
            raise bad("grouplist names an unknown group")
        group.grouplist = groups
    if "department" in params:
        departments = ids(params, "department")
        for ident in departments:
            tenant.department(ident)
        group.department = departments
    if "allow_userlist" in params:
        group.allow_userlist = strings(params, "allow_userlist")


def _group(tenant: Tenant2, params: Params) -> Group2:
    group = tenant.groups.get(text(params, "groupid").strip().lower())
    if group is None:
        raise Api2Error(60111, "group not found")
    return group


def group_create(tenant: Tenant2, params: Params, clock: float) -> Params:
    groupid = address(tenant, text(params, "groupid"))
    if tenant.kind_of(groupid):
        raise Api2Error(60102, "groupid already exists")
    if "allow_type" not in params:
        raise bad("allow_type is required")
    group = Group2(groupid, "", 0)
    _group_fields(tenant, group, params)
    if not (group.userlist or group.grouplist or group.department):
        raise bad("a group needs userlist, grouplist or department")
    tenant.groups[groupid] = group
    log_operation(tenant, clock, 32, groupid)
    return {}


def group_update(tenant: Tenant2, params: Params, clock: float) -> Params:
    group = _group(tenant, params)
    _group_fields(tenant, group, {k: v for k, v in params.items() if k != "groupid"})
    log_operation(tenant, clock, 34, group.groupid)
    return {}


def group_delete(tenant: Tenant2, params: Params, clock: float) -> Params:
    group = _group(tenant, params)
    del tenant.groups[group.groupid]
    log_operation(tenant, clock, 33, group.groupid)
    return {}


def group_get(tenant: Tenant2, params: Params) -> Params:
    g = _group(tenant, params)
    return {
        "groupid": g.groupid,
        "groupname": g.groupname,
        "userlist": g.userlist,
        "grouplist": g.grouplist,
        "department": g.department,
        "allow_type": g.allow_type,
        "allow_userlist": g.allow_userlist if g.allow_type == 3 else [],
    }


# -- tags ---------------------------------------------------------------------------------


def _tagname(tenant: Tenant2, params: Params, exclude: int = 0) -> str:
    name = text(params, "tagname")
    if len(name) > 32:
        raise Api2Error(40072, "tag name length invalid")
    if any(t.tagname == name and t.tagid != exclude for t in tenant.tags.values()):
        raise Api2Error(40071, "tag name already exists")
    return name


def _tag(tenant: Tenant2, params: Params) -> Tag2:
    tag = tenant.tags.get(integer(params, "tagid"))
    if tag is None:
        raise Api2Error(40068, "invalid tagid")
    return tag


def tag_create(tenant: Tenant2, params: Params) -> Params:
    name = _tagname(tenant, params)
    if len(tenant.tags) >= 3000:
        raise bad("at most 3000 tags")
    tagid = integer(params, "tagid", default=0)
    if not tagid:  # omitted: the next free number
        tagid = tenant.next_tag
        while tagid in tenant.tags:
            tagid += 1
    elif tagid in tenant.tags:
        raise Api2Error(40068, "tagid already exists")
    tenant.next_tag = max(tenant.next_tag, tagid + 1)
    tenant.tags[tagid] = Tag2(tagid, name)
    return {"tagid": tagid}


def tag_update(tenant: Tenant2, params: Params) -> Params:
    tag = _tag(tenant, params)
    tag.tagname = _tagname(tenant, params, exclude=tag.tagid)
    return {}


def tag_delete(tenant: Tenant2, params: Params) -> Params:
    del tenant.tags[_tag(tenant, params).tagid]
    return {}


def tag_get(tenant: Tenant2, params: Params) -> Params:
    tag = _tag(tenant, params)
    users = [
        {"userid": u, "name": tenant.members[u].name} for u in tag.userlist if u in tenant.members
    ]
    return {"tagname": tag.tagname, "userlist": users, "partylist": tag.partylist}


def tag_members(tenant: Tenant2, params: Params, *, add: bool) -> Params:
    """``tag/addtagusers`` / ``tag/deltagusers``: partial refusals are listed; all
    refused is 40070 (add) or 40031 (delete), as the doc says."""
    tag = _tag(tenant, params)
    users, parties = strings(params, "userlist"), ids(params, "partylist")
    if not users and not parties:
        raise bad("userlist and partylist must not both be empty")
    if len(users) > 1000 or len(parties) > 100:
        raise bad("at most 1000 users and 100 departments per call")
    bad_users = [u for u in users if u not in tenant.members or (not add and u not in tag.userlist)]
    bad_parties = [
        p for p in parties if p not in tenant.departments or (not add and p not in tag.partylist)
    ]
    if len(bad_users) == len(users) and len(bad_parties) == len(parties):
        raise Api2Error(40070 if add else 40031, "all list invalid")
    good_users = [u for u in users if u not in bad_users]
    good_parties = [p for p in parties if p not in bad_parties]
    if add:
        tag.userlist += [u for u in good_users if u not in tag.userlist]
        tag.partylist += [p for p in good_parties if p not in tag.partylist]
    else:
        tag.userlist = [u for u in tag.userlist if u not in good_users]
        tag.partylist = [p for p in tag.partylist if p not in good_parties]
    out: Params = {}
    if bad_users:
        out["invalidlist"] = "|".join(bad_users)
    if bad_parties:
        out["invalidparty"] = bad_parties
    return out


def tag_list(tenant: Tenant2) -> Params:
    return {"taglist": [{"tagid": t.tagid, "tagname": t.tagname} for t in tenant.tags.values()]}
