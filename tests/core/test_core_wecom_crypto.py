"""WeCom's message crypto (relay.core.wecom_crypto) against the worked vectors of
``spec/EXMAIL-API-2-NOTES.md`` §9.8: A, WeCom's official sample (real Tencent data), and
B, the three Exmail-shaped vectors, byte-exact. No I/O."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.callback_xml import MailMessage, UnreadMessage, parse_message
from relay.core.wecom_crypto import (
    CryptoError,
    WeComCrypto,
    check_signature,
    decode_key,
    decrypt,
    encrypt,
    signature,
    valid_encoding_aes_key,
    valid_token,
)

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "ww1436e0e65a779aee"
PREFIX_B = b"0123456789abcdef"

A_GET = {
    "timestamp": "1476416373",
    "nonce": "47744683",
    "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnF"
    "yq6SVHyA==",
    "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
}
A_POST_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAg"
    "GzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ"
    "9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2q"
    "ARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL"
    "6aSDPOYuPDGOCI8jmnKiypE+"
)
A_POST_MSG = (
    "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
    "<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content>"
    "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
).encode()

B_MAIL_MSG = (
    b"<xml><CorpID><![CDATA[ww1436e0e65a779aee]]></CorpID><MsgType><![CDATA[Mail]]></MsgType>"
    b"<MailID><![CDATA[Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=]]></MailID><ToUserID>"
    b'<![CDATA[zhangsanp@gzdev.com]]></ToUserID><FromUser><![CDATA["lisi@gzdev.com"'
    b"<lisi@gzdev.com>]]></FromUser><Title><![CDATA[Hello World]]></Title><Time>1610007415"
    b"</Time><NewCount>11</NewCount></xml>"
)
B_MAIL_ENCRYPT = (
    "scEag1243Fmy/fYz4Ux8D1cEXErysoAOk7iWfwXdAS/30L4oflASdiNyxrf0RE98FWI9/YL1gS5JkhylioyrG3hsUO"
    "os9SeBILE+SRSfwuEGdxOe5Fs3XKg1FWOthbMGiKmvGDspZgBR57KOGhFa6HHG+VSztsjdcSvNBkEETBOKthhUiIaD"
    "Ha9l3hGY1GwUF5ogE+4oWaoe0VDuOx84JehKpqAt7Q8zDqLJk38tnEQwvsZRPFDafkqCrLpqLIxBUeTxCop108AtAm"
    "dsVSD0R49Hfv3W0Q/LsHJUcPC2CMLirxpwSSV4mdG3+YNYF5jDRdITTMKqCcGMVIIrkVFyclBpg5gRv3k9jjy13Nla0"
    "m8yy7BSWTikBlut6YVR3dVQHNrCY2P68kYZAmvejvC40SNRq/lQm9RRiXjCP6vSQPNs8mPIWyt2KRayMR0zyitFK9x5"
    "McOq8I2738WWDQpijaHLcgkQzp9vOwXdDGLgn5VVG8sd4ATa6kFxi46mqI02AnMyIolBLYQB/kKTpRqbYPuhmTG0XXN"
    "3me+GPNNWtnI="
)
B_UNREAD_MSG = (
    b"<xml><CorpID><![CDATA[ww1436e0e65a779aee]]></CorpID><MsgType><![CDATA[UnRead]]></MsgType>"
    b"<UserID><![CDATA[zhangsanp@gzdev.com]]></UserID><Time>1610007514</Time><UnReadCount>10"
    b"</UnReadCount></xml>"
)
B_UNREAD_ENCRYPT = (
    "scEag1243Fmy/fYz4Ux8Dz9dNzmngsHsqgHncNnKHMXKtmA4QNyC9oR95Qwobt3R+JFeCymzy0/+PsPhQYQ2dE0DsT"
    "ykShTfBnkAZGJznnDehpXAqVfE2ZDw5O1V9jqiqvOpFXEm6b2I2jjiERU0bIFVQYWJZDZvCjIZ0xEIfoqCvIhrQXtc"
    "Ss6oAC9kG4pN7RlJ3fWf0UWvlO1/fQOfk8EE8bhPAG3b2EHy4oR3jIO89MIu9oFj5Sy8yRXEta3EbjqkOvLnAExaMlt"
    "7ntuw19HQgM0NrWLwon66XgDF5rqeUt6axjypIED6mzw40jh4Des8NKohDHmG7ClTF+g/Yg=="
)
B_VERIFY_ECHOSTR = (
    "scEag1243Fmy/fYz4Ux8D8u5opfJBFPB5X6hTobrDwE97tDIjbY23J7j4wItBIN04K7pUrh5jcPHT0EnIRxQ5w=="
)


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto.create(token=TOKEN, encoding_aes_key=KEY, corpid=CORPID)


def test_key_decodes_leniently_to_the_vectors_aes_key() -> None:
    key = decode_key(KEY)
    assert key.hex() == "eaa91d32babaf274ca76ece72583b5037ed6da8120a64314be4b6d453a2a854b"
    # The 43rd character carries spare bits: re-encoding does not give the key back.
    assert base64.b64encode(key).decode().rstrip("=") != KEY


def test_vector_a_get_verifies_and_decrypts_to_the_echo(crypto: WeComCrypto) -> None:
    assert (
        signature(TOKEN, A_GET["timestamp"], A_GET["nonce"], A_GET["echostr"])
        == A_GET["msg_signature"]
    )
    plain = decrypt(crypto.key, A_GET["echostr"], CORPID)
    assert plain.msg == b"1288432023552776189"
    assert plain.random_prefix == b"8908d0ff052afda0"
    assert plain.padding == 7
    assert (
        crypto.verify(A_GET["msg_signature"], A_GET["timestamp"], A_GET["nonce"], A_GET["echostr"])
        == b"1288432023552776189"
    )


def test_vector_a_post_verifies_and_decrypts(crypto: WeComCrypto) -> None:
    sig = "0c3914025cb4b4d68103f6bfc8db550f79dcf48e"
    assert signature(TOKEN, "1476422779", "1597212914", A_POST_ENCRYPT) == sig
    plain = decrypt(crypto.key, A_POST_ENCRYPT, CORPID)
    assert plain.msg == A_POST_MSG
    assert len(plain.msg) == 228
    assert plain.random_prefix == b"694ce5a83ae07fe3"
    assert plain.padding == 22


@pytest.mark.parametrize(
    ("msg", "sealed", "timestamp", "nonce", "sig", "pad"),
    [
        (B_MAIL_MSG, B_MAIL_ENCRYPT, "1610007415", "1372623149",
         "ab3bed42d6bab19f334615b7fb8cf0954f0083f4", 11),
        (B_UNREAD_MSG, B_UNREAD_ENCRYPT, "1610007514", "263014780",
         "cc367241a53b3528c2adf93948a221af073b2d4d", 23),
        (b"5927782489442352469", B_VERIFY_ECHOSTR, "1610000000", "1234567890",
         "472cdd5c7f5fffc53338e8cef993017ec518d782", None),
    ],
)  # fmt: skip
def test_vector_b_is_byte_exact_both_ways(
    crypto: WeComCrypto, msg: bytes, sealed: str, timestamp: str, nonce: str, sig: str,
    pad: int | None,
) -> None:  # fmt: skip
    assert crypto.seal(msg, timestamp, nonce, random_prefix=PREFIX_B) == (sealed, sig)
    plain = decrypt(crypto.key, sealed, CORPID)
    assert plain.msg == msg
    assert plain.random_prefix == PREFIX_B
    if pad is not None:
        assert plain.padding == pad
    assert crypto.verify(sig, timestamp, nonce, sealed) == msg


def test_vector_b_messages_parse_by_tag_name() -> None:
    mail = parse_message(B_MAIL_MSG)
    assert mail == MailMessage(
        corpid=CORPID,
        mail_id="Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=",
        to_user="zhangsanp@gzdev.com",
        from_user='"lisi@gzdev.com"<lisi@gzdev.com>',
        title="Hello World",
        time=1610007415,
        new_count=11,
    )
    assert parse_message(B_UNREAD_MSG) == UnreadMessage(
        corpid=CORPID, user="zhangsanp@gzdev.com", time=1610007514, unread=10
    )


def test_the_traps_older_request_does_not_verify() -> None:
    # §9.8: the sample's comment quotes a request made with another token and key.
    with pytest.raises(CryptoError) as caught:
        check_signature(TOKEN, "1409659589", "263014780", "P9nAzCzyDtyTWESHep1vC5X9xho",
                        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3")  # fmt: skip
    assert caught.value.reason == "bad-signature"


def test_signature_is_constant_time_compared_and_case_blind() -> None:
    sig = A_GET["msg_signature"]
    check_signature(TOKEN, A_GET["timestamp"], A_GET["nonce"], A_GET["echostr"], sig.upper())
    for wrong in (sig[:-1] + "0", "", sig + "0", "é" * 40):
        with pytest.raises(CryptoError, match="bad-signature"):
            check_signature(TOKEN, A_GET["timestamp"], A_GET["nonce"], A_GET["echostr"], wrong)


def test_tampered_ciphertext_is_refused_by_the_signature(crypto: WeComCrypto) -> None:
    raw = bytearray(base64.b64decode(B_MAIL_ENCRYPT))
    raw[40] ^= 1
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CryptoError) as caught:
        crypto.verify("ab3bed42d6bab19f334615b7fb8cf0954f0083f4", "1610007415", "1372623149",
                      tampered)  # fmt: skip
    assert caught.value.reason == "bad-signature"


def test_wrong_corpid_is_refused(crypto: WeComCrypto) -> None:
    with pytest.raises(CryptoError) as caught:
        decrypt(crypto.key, B_MAIL_ENCRYPT, "ww0000000000000000")
    assert caught.value.reason == "wrong-corpid"
    other = WeComCrypto.create(token=TOKEN, encoding_aes_key=KEY, corpid="wwother")
    sealed, sig = other.seal(b"<xml/>", "1", "2", random_prefix=PREFIX_B)
    with pytest.raises(CryptoError, match="wrong-corpid"):
        crypto.verify(sig, "1", "2", sealed)


def _seal_raw(key: bytes, plain: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def test_bad_padding_and_bad_buffers_are_refused(crypto: WeComCrypto) -> None:
    key = crypto.key
    # A length field that runs past the buffer (padding byte 0x00 taken as no padding).
    plain = PREFIX_B + (1000).to_bytes(4, "big") + b"x" * 12
    with pytest.raises(CryptoError, match="bad-buffer"):
        decrypt(key, _seal_raw(key, plain), CORPID)
    # Padding byte 0xff (outside 1..32) is taken as 0: the id then holds the pad bytes.
    plain = PREFIX_B + (4).to_bytes(4, "big") + b"abcd" + CORPID.encode()
    plain += b"\xff" * (32 - len(plain) % 32)
    with pytest.raises(CryptoError):
        decrypt(key, _seal_raw(key, plain), CORPID)
    # Not base64; not whole AES blocks; empty.
    for sealed in ("not base64!!", base64.b64encode(b"x" * 17).decode(), ""):
        with pytest.raises(CryptoError, match="bad-ciphertext"):
            decrypt(key, sealed, CORPID)


def test_key_and_token_rules() -> None:
    assert valid_encoding_aes_key(KEY)
    assert not valid_encoding_aes_key(KEY[:-1])
    assert not valid_encoding_aes_key(KEY[:-1] + "+")
    assert valid_token(TOKEN) and not valid_token("a" * 33) and not valid_token("to-ken")
    with pytest.raises(CryptoError, match="bad-key"):
        decode_key("short")


def test_repr_shows_no_secret(crypto: WeComCrypto) -> None:
    assert TOKEN not in repr(crypto)
    assert crypto.key.hex() not in repr(crypto)
    assert CORPID in repr(crypto)


@given(
    msg=st.binary(max_size=2048),
    corpid=st.text(min_size=1, max_size=40),
    prefix=st.binary(min_size=16, max_size=16),
    key=st.binary(min_size=32, max_size=32),
)
def test_round_trip(msg: bytes, corpid: str, prefix: bytes, key: bytes) -> None:
    sealed = encrypt(key, msg, corpid, random_prefix=prefix)
    assert len(base64.b64decode(sealed)) % 32 == 0
    plain = decrypt(key, sealed, corpid)
    assert (plain.msg, plain.receive_id, plain.random_prefix) == (msg, corpid, prefix)
    assert 1 <= plain.padding <= 32
