"""The callback's pure core: the XML (relay.core.callback_xml) and the decisions and
events (relay.core.callback). No I/O."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.callback import Refused, events_of, open_post, verify_url
from relay.core.callback_xml import (
    MailMessage,
    MessageError,
    OtherMessage,
    UnreadMessage,
    envelope_ciphertext,
    envelope_xml,
    mail_xml,
    parse_message,
    unread_xml,
)
from relay.core.events import MAIL_NEW, MAIL_UNREAD, mail_new
from relay.core.wecom_crypto import WeComCrypto
from tests.core.test_core_wecom_crypto import (
    B_MAIL_ENCRYPT,
    B_VERIFY_ECHOSTR,
    CORPID,
    KEY,
    TOKEN,
)

NOW = datetime(2026, 12, 7, tzinfo=UTC)
CRYPTO = WeComCrypto.create(token=TOKEN, encoding_aes_key=KEY, corpid=CORPID)


def _post(msg: bytes, *, timestamp: str = "1610007415", nonce: str = "1372623149",
          crypto: WeComCrypto = CRYPTO) -> tuple[dict[str, str], bytes]:  # fmt: skip
    sealed, sig = crypto.seal(msg, timestamp, nonce, random_prefix=os.urandom(16))
    query = {"msg_signature": sig, "timestamp": timestamp, "nonce": nonce}
    return query, envelope_xml(sealed, corpid=crypto.corpid, agentid="1000002")


def test_encrypt_is_found_by_tag_name_or_as_the_last_cdata() -> None:
    assert envelope_ciphertext(envelope_xml("abc=", corpid=CORPID)) == "abc="
    pycb = b"<xml><A><![CDATA[ww1]]></A><B><![CDATA[7]]></B><C><![CDATA[sealed==]]></C></xml>"
    assert envelope_ciphertext(pycb) == "sealed=="
    reordered = b"<xml><Encrypt><![CDATA[e1]]></Encrypt><ToUserName>x</ToUserName></xml>"
    assert envelope_ciphertext(reordered) == "e1"
    nested = (
        b"<xml><Data><AgentID>7</AgentID><Encrypt>e2</Encrypt></Data><Encrypt>x</Encrypt></xml>"
    )
    assert envelope_ciphertext(nested) == "e2"  # the first Encrypt, at any depth
    with pytest.raises(MessageError):
        envelope_ciphertext(b"<xml><CorpID>ww</CorpID></xml>")


@pytest.mark.parametrize(
    "raw",
    [
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<xml><Encrypt>&e;</Encrypt></xml>",
        b'<!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<xml><Encrypt>&b;</Encrypt></xml>",
        b"<xml><Encrypt>abc</Encrypt>",
        b"<xml>" + b"<a>" * 8 + b"</a>" * 8 + b"</xml>",
        b"",
        b"\xff\xfe",
    ],
)
def test_dtds_and_malformed_xml_are_refused(raw: bytes) -> None:
    with pytest.raises(MessageError):
        envelope_ciphertext(raw)


def test_msgtype_is_case_insensitive_and_unknown_types_are_kept() -> None:
    mail = mail_xml(corpid=CORPID, mail_id="m1", to_user="bob@gzdev.com", from_user="a",
                    title="t ]]> end", time=5, new_count=2, msg_type="MAIL")  # fmt: skip
    parsed = parse_message(mail)
    assert isinstance(parsed, MailMessage)
    assert parsed.title == "t ]]> end"
    assert parse_message(unread_xml(corpid=CORPID, user="u", time=1, unread=0, msg_type="unread")) \
        == UnreadMessage(corpid=CORPID, user="u", time=1, unread=0)  # fmt: skip
    other = b"<xml><CorpID>ww</CorpID><MsgType><![CDATA[Calendar]]></MsgType></xml>"
    assert parse_message(other) == OtherMessage(corpid="ww", msg_type="Calendar")


@pytest.mark.parametrize(
    "raw",
    [
        b"<xml><MsgType>Mail</MsgType><ToUserID>u</ToUserID><Time>1</Time></xml>",  # no MailID
        b"<xml><MsgType>UnRead</MsgType><UserID>u</UserID><Time>1</Time></xml>",  # no count
        b"<xml><MsgType>UnRead</MsgType><UserID>u</UserID><Time>x</Time>"
        b"<UnReadCount>1</UnReadCount></xml>",
        b"<xml><MsgType>UnRead</MsgType><UserID>u</UserID><Time>1</Time>"
        b"<UnReadCount>-1</UnReadCount></xml>",
        b"<xml><CorpID>ww</CorpID></xml>",  # no MsgType
    ],
)
def test_incomplete_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(MessageError):
        parse_message(raw)


def test_get_handshake_answers_the_plaintext() -> None:
    query = {"msg_signature": "472cdd5c7f5fffc53338e8cef993017ec518d782",
             "timestamp": "1610000000", "nonce": "1234567890",
             "echostr": B_VERIFY_ECHOSTR.replace("+", " ")}  # fmt: skip
    assert verify_url(CRYPTO, query, now=1610000000, max_age=600) == b"5927782489442352469"
    with pytest.raises(Refused) as caught:
        verify_url(CRYPTO, query, now=1610000000 + 601, max_age=600)
    assert (caught.value.status, caught.value.reason) == (403, "stale")
    assert verify_url(CRYPTO, query, now=2e9, max_age=0) == b"5927782489442352469"
    with pytest.raises(Refused) as caught:
        verify_url(CRYPTO, {**query, "msg_signature": "0" * 40}, now=1610000000, max_age=600)
    assert (caught.value.status, caught.value.reason) == (403, "bad-signature")
    with pytest.raises(Refused) as caught:
        verify_url(CRYPTO, {k: v for k, v in query.items() if k != "nonce"}, now=0, max_age=0)
    assert (caught.value.status, caught.value.reason) == (400, "missing-parameter")


def test_post_vector_b_mail_gives_the_listen_reminders_id() -> None:
    query = {"msg_signature": "ab3bed42d6bab19f334615b7fb8cf0954f0083f4",
             "timestamp": "1610007415", "nonce": "1372623149"}  # fmt: skip
    body = envelope_xml(B_MAIL_ENCRYPT, corpid=CORPID, agentid="1")
    message = open_post(CRYPTO, query, body, now=1610007415, max_age=600)
    [event] = events_of("acme", message, now=NOW)
    assert event.type == MAIL_NEW and event.routing_key == "acme.mail.new"
    assert event.subject == "zhangsanp@gzdev.com"
    assert dict(event.data) == {
        "user": "zhangsanp@gzdev.com",
        "mail_id": "Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=",
        "sender": '"lisi@gzdev.com"<lisi@gzdev.com>',
        "receiver": "zhangsanp@gzdev.com",
        "subject": "Hello World",
        "summary": "",
        "unread": 11,
    }
    listen = mail_new(
        tenant="acme", user="ZhangSanP@gzdev.com", mail_id=event.data["mail_id"],
        sender="", receiver="", subject="", summary="", unread=None, now=NOW,
    )  # fmt: skip
    assert event.id == listen.id


def test_unread_ids_are_stable_and_tell_times_apart() -> None:
    def event_id(time: int, unread: int, user: str = "bob@gzdev.com") -> str:
        query, body = _post(unread_xml(corpid=CORPID, user=user, time=time, unread=unread))
        [event] = events_of("acme", open_post(CRYPTO, query, body, now=0, max_age=0), now=NOW)
        assert event.type == MAIL_UNREAD and dict(event.data) == {"user": user, "unread": unread}
        return event.id

    assert event_id(100, 3) == event_id(100, 3) == event_id(100, 3, "BOB@gzdev.com")
    assert len({event_id(100, 3), event_id(101, 3), event_id(100, 2)}) == 3


def test_post_refusals() -> None:
    query, body = _post(mail_xml(corpid=CORPID, mail_id="m", to_user="u", from_user="f",
                                 title="t", time=1, new_count=1))  # fmt: skip

    def reason(q: dict[str, str], b: bytes, *, now: float = 1610007415) -> tuple[int, str]:
        with pytest.raises(Refused) as caught:
            open_post(CRYPTO, q, b, now=now, max_age=600)
        return caught.value.status, caught.value.reason

    assert reason({**query, "nonce": "1"}, body) == (403, "bad-signature")
    assert reason(query, body[:-10]) == (400, "malformed-body")
    assert reason(query, b"<xml><Encrypt>" + b"A" * 64 + b"</Encrypt></xml>") == (
        403,
        "bad-signature",
    )
    assert reason(query, body, now=1610007415 + 3600) == (403, "stale")
    other = WeComCrypto.create(token=TOKEN, encoding_aes_key=KEY, corpid="wwother")
    q2, b2 = _post(b"<xml/>", crypto=other)
    assert reason(q2, b2) == (403, "wrong-corpid")
    # The ReceiveId is right but the message names another CorpID.
    q3, b3 = _post(unread_xml(corpid="wwother", user="u", time=1, unread=1))
    assert reason(q3, b3) == (403, "wrong-corpid")
    q4, b4 = _post(b"<xml><MsgType>Mail</MsgType></xml>")
    assert reason(q4, b4) == (400, "malformed-body")
    # A well-signed ciphertext that is not one.
    sig_query = dict(query)
    from relay.core.wecom_crypto import signature

    sig_query["msg_signature"] = signature(TOKEN, query["timestamp"], query["nonce"], "QUJD")
    assert reason(sig_query, b"<xml><Encrypt>QUJD</Encrypt></xml>") == (400, "bad-ciphertext")


def test_unknown_msgtype_makes_no_event() -> None:
    query, body = _post(
        b"<xml><CorpID>" + CORPID.encode() + b"</CorpID><MsgType>New</MsgType></xml>"
    )
    message = open_post(CRYPTO, query, body, now=0, max_age=0)
    assert isinstance(message, OtherMessage)
    assert events_of("acme", message, now=NOW) == []


@given(
    title=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=200),
    user=st.emails(),
    count=st.integers(min_value=0, max_value=2**31),
)
def test_any_mail_round_trips_through_the_sender_and_receiver(
    title: str, user: str, count: int
) -> None:
    msg = mail_xml(corpid=CORPID, mail_id="id/+=", to_user=user, from_user="x", title=title,
                   time=7, new_count=count)  # fmt: skip
    query, body = _post(msg)
    parsed = open_post(CRYPTO, query, body, now=0, max_age=0)
    assert isinstance(parsed, MailMessage)
    assert (parsed.title, parsed.to_user, parsed.new_count) == (title, user, count)
