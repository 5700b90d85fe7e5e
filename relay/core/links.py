"""Signed SSO links: an OA page renders a link, the user's browser follows it to the relay.

Where it sits: the OA backend signs (with this module, or any language following
``docs/gateway-links.md``) and the relay's ``/sso/...`` route
(:mod:`relay.gateway.sso_links`) verifies, then redirects to the tenant's login page. No
call to the relay is needed when the page is rendered. Pure: no I/O, no clock of its own
(callers pass ``now``).

The link is::

    {base_url}/sso/{tenant}/{email}?exp={exp}&sig={sig}

- ``email`` is stripped and lower-cased before signing; ``tenant`` is taken as is.
  Neither may be empty or hold a control character (a newline would make the signed
  string ambiguous).
- In the URL both are percent-encoded as UTF-8 (RFC 3986), keeping only unreserved
  characters and ``@`` in the email: ``quote(email, safe="@")``, ``quote(tenant, safe="")``.
- ``exp`` is the expiry, whole seconds since the Unix epoch, in decimal without sign or
  leading zeros.
- The signed string is ``f"{tenant}\\n{email}\\n{exp}"`` as UTF-8 (the decoded values,
  not their percent-encoded form); ``sig`` is ``base64url(HMAC-SHA256(secret, signed))``
  without ``=`` padding (43 characters).

A link is good from any time up to ``exp + skew`` (``skew`` absorbs the clocks of the
signer and the relay disagreeing), and only if ``exp`` is at most ``max_ttl`` (600 s by
default, ``[gateway] max_link_ttl``) plus ``skew`` ahead of the verifier's clock: a link
signed to live for a month is refused like a tampered one, so a leaked link, or a signer
that mints long-lived ones, opens a mailbox for minutes, not for weeks.
:class:`SeenLinks` remembers used signatures for links that may be used once
(``single_use``); a claim is given back (:meth:`SeenLinks.release`) when the login
could not be completed, so an upstream failure does not spend the link.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import heapq
import hmac
import re
from urllib.parse import quote

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_SKEW",
    "Claim",
    "LinkCheck",
    "SeenLinks",
    "normalize_email",
    "sign_sso_link",
    "signature",
    "signed_string",
    "verify_sso_link",
]

DEFAULT_SKEW = 30
DEFAULT_MAX_TTL = 600
"""The longest a link may still have to live when it is checked (seconds)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXP = re.compile(r"(?:0|[1-9][0-9]{0,11})")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")


class LinkCheck(enum.Enum):
    """The outcome of :func:`verify_sso_link`; only ``OK`` lets the browser in."""

    OK = "ok"
    EXPIRED = "expired"  # authentic, but past exp + skew
    TOO_LONG = "too_long"  # authentic, but exp is further ahead than max_ttl + skew
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"  # not a link this module could have made


def normalize_email(email: str) -> str:
    """The form of ``email`` that is signed and looked up: stripped, lower-case."""
    return email.strip().lower()


def _check_part(name: str, value: str) -> None:
    if not value or _CONTROL.search(value):
        raise ValueError(f"{name} must be non-empty and hold no control character")


def signed_string(*, tenant: str, email: str, exp: int) -> bytes:
    """The exact bytes the signature covers (``email`` already normalised)."""
    return f"{tenant}\n{email}\n{exp}".encode()


def signature(*, tenant: str, email: str, exp: int, secret: bytes) -> str:
    """``base64url(HMAC-SHA256(secret, signed_string))`` without padding."""
    mac = hmac.new(secret, signed_string(tenant=tenant, email=email, exp=exp), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def sign_sso_link(*, base_url: str, tenant: str, email: str, secret: bytes, expires_at: int) -> str:
    """A signed link into ``email``'s mailbox of ``tenant``, good until ``expires_at``.

    ``base_url`` is where browsers reach the relay (``https://relay.example.com``); a
    trailing ``/`` is dropped. Raises ``ValueError`` for an empty secret, an empty or
    control-character tenant or email, or a negative ``expires_at``.
    """
    if not secret:
        raise ValueError("the link secret must not be empty")
    email = normalize_email(email)
    _check_part("tenant", tenant)
    _check_part("email", email)
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at < 0:
        raise ValueError("expires_at must be a non-negative integer (Unix seconds)")
    sig = signature(tenant=tenant, email=email, exp=expires_at, secret=secret)
    path = f"/sso/{quote(tenant, safe='')}/{quote(email, safe='@')}"
    return f"{base_url.rstrip('/')}{path}?exp={expires_at}&sig={sig}"


def verify_sso_link(
    *,
    tenant: str,
    email: str,
    exp: str,
    sig: str,
    secret: bytes,
    now: float,
    skew: float = DEFAULT_SKEW,
    max_ttl: float = DEFAULT_MAX_TTL,
) -> LinkCheck:
    """Check a link's parts as the route received them (decoded path, raw query values).

    The signature is checked before the expiry, so ``EXPIRED`` and ``TOO_LONG`` (``exp``
    further ahead than ``now + max_ttl + skew``) are only said of authentic links. The
    comparison is constant-time, and only the canonical spelling of ``sig`` passes (so a
    signature is a stable key for :class:`SeenLinks`).
    """
    if not secret or not _EXP.fullmatch(exp) or not _SIG.fullmatch(sig):
        return LinkCheck.MALFORMED
    email = normalize_email(email)
    if not tenant or not email or _CONTROL.search(tenant) or _CONTROL.search(email):
        return LinkCheck.MALFORMED
    expires_at = int(exp)
    # Compared as text, not decoded bytes: base64 ignores the low bits of the last
    # character, so two spellings of one MAC would both pass (and dodge SeenLinks).
    expected = signature(tenant=tenant, email=email, exp=expires_at, secret=secret)
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii")):
        return LinkCheck.BAD_SIGNATURE
    if now > expires_at + skew:
        return LinkCheck.EXPIRED
    if expires_at > now + max_ttl + skew:
        return LinkCheck.TOO_LONG
    return LinkCheck.OK


class Claim(enum.Enum):
    """The outcome of :meth:`SeenLinks.claim`."""

    FIRST = "first"  # never seen: the link may be used now
    REPLAYED = "replayed"  # seen before and not yet forgotten
    FULL = "full"  # too many live links remembered: refuse rather than forget one early


class SeenLinks:
    """Signatures of single-use links, each remembered until its link can no longer pass.

    Bounded: at most ``max_entries`` live signatures. When full, a new link is refused
    (``Claim.FULL``) rather than an old one forgotten early, which would let it be
    replayed. Entries past their time are dropped as claims come in. No clock: the caller
    passes ``now``.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._until: dict[str, float] = {}
        self._by_time: list[tuple[float, str]] = []
        self._queued: set[str] = set()  # keys with an entry in _by_time

    def __repr__(self) -> str:
        return f"<SeenLinks {len(self._until)}/{self.max_entries}>"

    def __len__(self) -> int:
        return len(self._until)

    def _forget(self, now: float) -> None:
        while self._by_time and self._by_time[0][0] < now:
            _, key = heapq.heappop(self._by_time)
            self._until.pop(key, None)
            self._queued.discard(key)

    def claim(self, key: str, *, until: float, now: float) -> Claim:
        """Use ``key`` (a link's signature) once; remember it until ``until``."""
        self._forget(now)
        if key in self._until:
            return Claim.REPLAYED
        if len(self._until) >= self.max_entries:
            return Claim.FULL
        self._until[key] = until
        if key not in self._queued:  # a released key is still queued: one entry per key
            self._queued.add(key)
            heapq.heappush(self._by_time, (until, key))
        return Claim.FIRST

    def release(self, key: str) -> None:
        """Give back a claim whose use did not happen (the login failed upstream), so the
        link can be tried again. Its entry in the time queue stays (dropped in time), so
        claims and releases of one key never grow the queue; a claim of the same key again
        has the same ``until`` (the key is a signature over ``exp``)."""
        self._until.pop(key, None)
