"""Signed SSO links (:mod:`relay.core.links`): the documented test vectors, round trips, and
that any tamper of tenant, email, exp or sig is refused. Pure: no I/O."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.core.links import (
    Claim,
    LinkCheck,
    SeenLinks,
    normalize_email,
    sign_sso_link,
    signature,
    verify_sso_link,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway-links.md"
BASE = "https://relay.example.com/"
SECRET = b"link-secret-1"


def doc_vectors() -> list[tuple[bytes, str, str, int, str]]:
    """The rows of the test-vector table of docs/gateway-links.md."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = re.findall(r"`([^`]*)`", line)
        if line.startswith("| `") and len(cells) == 5:
            secret, tenant, email, exp, url = cells
            rows.append((bytes.fromhex(secret), tenant, email, int(exp), url))
    return rows


def parts(url: str) -> tuple[str, str, str, str]:
    """What the relay's route sees: the decoded path parts and the raw query values."""
    split = urlsplit(url)
    _, sso, tenant, email = split.path.split("/")
    assert sso == "sso"
    query = parse_qs(split.query)
    return unquote(tenant), unquote(email), query["exp"][0], query["sig"][0]


def check(url: str, *, secret: bytes = SECRET, now: float = 0) -> LinkCheck:
    tenant, email, exp, sig = parts(url)
    return verify_sso_link(tenant=tenant, email=email, exp=exp, sig=sig, secret=secret, now=now)


def test_the_documented_vectors_are_what_the_code_signs() -> None:
    vectors = doc_vectors()
    assert len(vectors) == 4  # the table was found and read whole
    for secret, tenant, email, exp, url in vectors:
        made = sign_sso_link(
            base_url=BASE, tenant=tenant, email=email, secret=secret, expires_at=exp
        )
        assert made == url
        assert check(url, secret=secret, now=exp) is LinkCheck.OK


def test_the_documented_stdlib_snippet_signs_the_same() -> None:
    snippet = DOC.read_text().split("the standard library is enough:\n\n```python\n")[1]
    namespace: dict[str, object] = {}
    exec(snippet.split("```")[0], namespace)  # noqa: S102 - the doc's own code, under test
    sign = namespace["sign"]
    for secret, tenant, email, exp, url in doc_vectors():
        assert sign(BASE, tenant, email, secret, exp) == url  # type: ignore[operator]


def test_expiry_has_a_bounded_skew() -> None:
    url = sign_sso_link(
        base_url=BASE, tenant="acme", email="a@x.com", secret=SECRET, expires_at=1000
    )
    assert check(url, now=999) is LinkCheck.OK
    assert check(url, now=1030) is LinkCheck.OK
    assert check(url, now=1030.5) is LinkCheck.EXPIRED
    assert check(url, secret=b"other", now=2000) is LinkCheck.BAD_SIGNATURE  # not "expired"


@pytest.mark.parametrize(
    ("exp", "sig"),
    [
        ("", "A" * 43),
        ("-5", "A" * 43),
        ("012", "A" * 43),
        ("1e3", "A" * 43),
        ("10", "A" * 42),
        ("10", "A" * 44),
        ("10", "A" * 42 + "="),
        ("10", "A" * 42 + "+"),
    ],
)
def test_malformed_parts(exp: str, sig: str) -> None:
    got = verify_sso_link(tenant="t", email="a@x.com", exp=exp, sig=sig, secret=SECRET, now=0)
    assert got is LinkCheck.MALFORMED


def test_empty_or_newline_parts_are_refused_both_ways() -> None:
    for tenant, email in (("", "a@x.com"), ("t", " "), ("a\nb", "c@x.com"), ("t", "a@x\n.com")):
        with pytest.raises(ValueError, match="control character"):
            sign_sso_link(base_url=BASE, tenant=tenant, email=email, secret=SECRET, expires_at=1)
        sig = "A" * 43
        got = verify_sso_link(tenant=tenant, email=email, exp="1", sig=sig, secret=SECRET, now=0)
        assert got is LinkCheck.MALFORMED
    with pytest.raises(ValueError, match="secret"):
        sign_sso_link(base_url=BASE, tenant="t", email="a@x.com", secret=b"", expires_at=1)
    with pytest.raises(ValueError, match="expires_at"):
        sign_sso_link(base_url=BASE, tenant="t", email="a@x.com", secret=SECRET, expires_at=-1)


def test_a_non_canonical_spelling_of_the_signature_fails() -> None:
    """The last base64 character carries 2 unused bits: another spelling decodes to the
    same MAC, and must not pass (it would dodge the single-use memory)."""
    url = sign_sso_link(base_url=BASE, tenant="acme", email="a@x.com", secret=SECRET, expires_at=99)
    tenant, email, exp, sig = parts(url)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twin = sig[:-1] + alphabet[last ^ 1]  # differs only in an unused low bit
    got = verify_sso_link(tenant=tenant, email=email, exp=exp, sig=twin, secret=SECRET, now=0)
    assert got is LinkCheck.BAD_SIGNATURE


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30
).filter(lambda s: s.strip() != "")
emails = st.builds(lambda user, host: f"{user}@{host}", texts, texts)
secrets = st.binary(min_size=1, max_size=64)
times = st.integers(min_value=0, max_value=10**11)


@given(tenant=texts, email=emails, secret=secrets, exp=times)
def test_round_trip(tenant: str, email: str, secret: bytes, exp: int) -> None:
    url = sign_sso_link(base_url=BASE, tenant=tenant, email=email, secret=secret, expires_at=exp)
    got_tenant, got_email, got_exp, _ = parts(url)
    assert (got_tenant, got_email, got_exp) == (tenant, normalize_email(email), str(exp))
    assert check(url, secret=secret, now=exp) is LinkCheck.OK


@given(
    tenant=texts,
    email=emails,
    secret=secrets,
    exp=times,
    field=st.sampled_from(["tenant", "email", "exp", "sig", "secret"]),
    data=st.data(),
)
def test_any_tamper_fails(
    tenant: str, email: str, secret: bytes, exp: int, field: str, data: st.DataObject
) -> None:
    url = sign_sso_link(base_url=BASE, tenant=tenant, email=email, secret=secret, expires_at=exp)
    values = dict(zip(("tenant", "email", "exp", "sig"), parts(url), strict=True))
    values["secret"] = secret  # type: ignore[assignment]
    if field == "exp":
        new: object = str(data.draw(times))
    elif field == "sig":
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        new = "".join(data.draw(st.lists(st.sampled_from(alphabet), min_size=43, max_size=43)))
    elif field == "secret":
        new = data.draw(secrets)
    elif field == "email":
        new = data.draw(emails)
        assume(normalize_email(str(new)) != values["email"])
    else:
        new = data.draw(texts)
    assume(new != values[field])
    values[field] = new  # type: ignore[assignment]
    got = verify_sso_link(
        tenant=values["tenant"],
        email=values["email"],
        exp=values["exp"],
        sig=values["sig"],
        secret=values["secret"],  # type: ignore[arg-type]
        now=0,
    )
    assert got is not LinkCheck.OK


def test_seen_links_refuse_a_replay_until_the_link_is_dead() -> None:
    seen = SeenLinks(max_entries=10)
    assert seen.claim("sig-a", until=100, now=0) is Claim.FIRST
    assert seen.claim("sig-a", until=100, now=50) is Claim.REPLAYED
    assert seen.claim("sig-a", until=100, now=100) is Claim.REPLAYED
    assert seen.claim("sig-b", until=200, now=100) is Claim.FIRST
    # Past its time the first is forgotten (the link itself no longer verifies by then).
    assert seen.claim("sig-c", until=300, now=100.5) is Claim.FIRST
    assert len(seen) == 2


def test_seen_links_are_bounded_and_refuse_rather_than_forget() -> None:
    seen = SeenLinks(max_entries=3)
    for i in range(3):
        assert seen.claim(f"s{i}", until=100 + i, now=0) is Claim.FIRST
    assert seen.claim("s3", until=500, now=50) is Claim.FULL
    assert seen.claim("s0", until=100, now=50) is Claim.REPLAYED  # nothing was evicted
    assert seen.claim("s3", until=500, now=100.5) is Claim.FIRST  # s0 expired: room again
    assert len(seen) == 3
    with pytest.raises(ValueError, match="max_entries"):
        SeenLinks(max_entries=0)


def test_a_link_further_ahead_than_max_ttl_is_too_long_and_only_if_authentic() -> None:
    now = 1_800_000_000
    parts = {"tenant": "acme", "email": "a@example.com", "secret": SECRET}
    for ahead, expected in ((600 + 30, LinkCheck.OK), (600 + 31, LinkCheck.TOO_LONG)):
        sig = signature(tenant="acme", email="a@example.com", exp=now + ahead, secret=SECRET)
        got = verify_sso_link(**parts, exp=str(now + ahead), sig=sig, now=now, skew=30)
        assert got is expected, ahead
    far = now + 30 * 86400
    sig = signature(tenant="acme", email="a@example.com", exp=far, secret=SECRET)
    assert verify_sso_link(**parts, exp=str(far), sig=sig, now=now, max_ttl=30 * 86400) is (
        LinkCheck.OK
    )
    forged = signature(tenant="acme", email="a@example.com", exp=far, secret=b"other")
    assert verify_sso_link(**parts, exp=str(far), sig=forged, now=now) is LinkCheck.BAD_SIGNATURE


def test_a_released_claim_can_be_claimed_again_without_growing_the_queue() -> None:
    seen = SeenLinks(max_entries=10)
    assert seen.claim("k", until=100, now=0) is Claim.FIRST
    for _ in range(50):
        seen.release("k")
        assert seen.claim("k", until=100, now=0) is Claim.FIRST
    assert seen.claim("k", until=100, now=0) is Claim.REPLAYED
    assert len(seen) == 1 and len(seen._by_time) == 1
    seen.release("k")
    assert len(seen) == 0
    assert seen.claim("other", until=200, now=150) is Claim.FIRST  # k's entry dropped in time
    assert seen._by_time == [(200, "other")]
