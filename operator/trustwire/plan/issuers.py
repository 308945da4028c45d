"""An external OpenID Connect issuer (Keycloak, Entra ID, another cluster) as a source of JWT
keys: what its discovery document and JWKS must be, how long its keys are trusted before the
next fetch, and what is kept when a fetch fails.

The network fetch itself is :mod:`trustwire.issuers`; everything here is a pure function of
the bytes it got and the time, so every refusal can be tested alone.

- The discovery document must name exactly the configured issuer (OIDC Discovery 1.0 §4.3:
  otherwise a document on one host could claim another's issuer) and a ``jwks_uri`` on the
  issuer's own origin over https.
- The JWKS keeps public members of signing keys only (``use: enc`` keys are skipped, ``oct``
  keys refused, private members dropped), and must hold at least one key.
- The next fetch follows ``Cache-Control: max-age`` within :data:`MIN_REFRESH` and
  :data:`MAX_REFRESH` (:data:`DEFAULT_REFRESH` without one, or with ``no-store``/``no-cache``
  the minimum), so a key the issuer adds reaches the receivers within the bound.
- A failed fetch keeps the last good keys: an issuer that is briefly unreachable must not
  make every token of its users fail; the failure is reported with its reason.
- As a relationship member, the last good keys are kept in a managed ConfigMap
  (:func:`issuer_object`), read back after a restart (:func:`kept`) and delivered to the
  identity as a CA-less peer's publication (:func:`issuer_publication`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from trustwire import names, pki
from trustwire.model import TrustRelationship
from trustwire.model.issuer import issuer_url_problem
from trustwire.plan.checks import Verdict
from trustwire.plan.conditions import Check, passed, stalled
from trustwire.plan.material import DesiredObject, StoredObject, to_json
from trustwire.plan.publication import Publication
from trustwire.plan.reasons import Reason
from trustwire.plan.status import IssuerStatus
from trustwire.times import parse_time, rfc3339

MIN_REFRESH = timedelta(seconds=30)
DEFAULT_REFRESH = timedelta(minutes=5)
MAX_REFRESH = timedelta(hours=1)
#: bounds of one fetch (discovery document or JWKS)
MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT = timedelta(seconds=10)
MAX_KEYS = 100

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,9})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


class IssuerProblem(Exception):
    """A fetch or a document was refused; ``reason`` is an issuer Reason, the message names what
    is wrong (never a key or a response body)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or 443


def same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)


def _json_object(body: bytes, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise IssuerProblem(Reason.ISSUER_INVALID, f"the {what} is not JSON") from None
    if not isinstance(value, Mapping):
        raise IssuerProblem(Reason.ISSUER_INVALID, f"the {what} is not a JSON object")
    return value


def jwks_uri_of(body: bytes, issuer: str) -> str:
    """The ``jwks_uri`` of a discovery document, after checking it belongs to ``issuer``."""
    document = _json_object(body, "discovery document")
    if document.get("issuer") != issuer:
        raise IssuerProblem(Reason.ISSUER_INVALID, "the discovery document names another issuer "
                                                   "(its issuer must equal the configured URL exactly)")
    uri = document.get("jwks_uri")
    if not isinstance(uri, str) or issuer_url_problem(uri.split("?", 1)[0]) is not None:
        raise IssuerProblem(Reason.ISSUER_INVALID, "the discovery document has no https jwks_uri")
    if not same_origin(uri, issuer):
        raise IssuerProblem(Reason.ISSUER_INVALID, "the jwks_uri is on another origin than the issuer")
    return uri


def signing_keys(body: bytes) -> tuple[dict[str, str], ...]:
    """The public signing keys of a JWKS (each validated, with a ``kid``), or :class:`IssuerProblem`."""
    keys = _json_object(body, "JWKS").get("keys")
    if not isinstance(keys, list) or not keys:
        raise IssuerProblem(Reason.ISSUER_INVALID, "the JWKS has no keys")
    if len(keys) > MAX_KEYS:
        raise IssuerProblem(Reason.ISSUER_INVALID, f"the JWKS has {len(keys)} keys; at most {MAX_KEYS} are taken")
    signing = [k for k in keys if isinstance(k, Mapping) and k.get("use", "sig") == "sig"]
    try:
        public = pki.jwks(signing)["keys"]
    except pki.PKIError as exc:
        raise IssuerProblem(Reason.ISSUER_INVALID, f"the JWKS holds an unusable key: {exc}") from None
    if not public:
        raise IssuerProblem(Reason.ISSUER_INVALID, "the JWKS has no signing key")
    return tuple(public)


def refresh_interval(cache_control: str | None) -> timedelta:
    """How long fetched keys are used before the next fetch, from the response's Cache-Control."""
    if cache_control is None:
        return DEFAULT_REFRESH
    if _NO_CACHE.search(cache_control):
        return MIN_REFRESH
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return DEFAULT_REFRESH
    return min(max(timedelta(seconds=int(match.group(1))), MIN_REFRESH), MAX_REFRESH)


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One successful fetch: the signing keys and the JWKS response's Cache-Control."""

    keys: tuple[dict[str, str], ...]
    cache_control: str | None


@dataclasses.dataclass(frozen=True)
class IssuerKeys:
    """What is known of an issuer: the last good keys (kept through failures) and the last outcome."""

    keys: tuple[dict[str, str], ...] = ()
    #: when the keys were last fetched successfully
    fetched_at: datetime | None = None
    #: when to fetch next
    refresh_at: datetime | None = None
    verdict: Verdict | None = None

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k["kid"] for k in self.keys)


def after_fetch(previous: IssuerKeys, outcome: Fetched | IssuerProblem, now: datetime) -> IssuerKeys:
    """The state after a fetch: new keys on success (noting a change of kids), the last good keys
    and the problem on failure; the next fetch follows the cache bound, or the minimum after a failure."""
    if isinstance(outcome, IssuerProblem):
        kept = f"; the last good keys ({len(previous.keys)}) are kept" if previous.keys else "; no keys yet"
        return dataclasses.replace(previous, refresh_at=now + MIN_REFRESH,
                                   verdict=Verdict(outcome.reason, outcome.message + kept))
    kids = tuple(k["kid"] for k in outcome.keys)
    changed = previous.keys and set(kids) != set(previous.kids)
    verdict = Verdict(Reason.ISSUER_KEYS_CHANGED, f"the issuer's key ids are now {', '.join(kids)}") if changed \
        else Verdict(Reason.ISSUER_ACCEPTED, f"{len(kids)} key(s) fetched")
    return IssuerKeys(outcome.keys, now, now + refresh_interval(outcome.cache_control), verdict)


# --- the issuer as a relationship member -------------------------------------------------------

def keys_of(stored: StoredObject | None) -> tuple[dict[str, str], ...]:
    """The last good keys kept in the relationship's issuer ConfigMap (none when absent or
    unreadable: then the next fetch is the only source)."""
    if stored is None or not stored.managed:
        return ()
    try:
        return signing_keys(stored.data.get(names.ISSUER_JWKS_KEY, b""))
    except IssuerProblem:
        return ()


def kept(stored: StoredObject | None, status: IssuerStatus | None, url: str) -> IssuerKeys:
    """What survives an operator restart: the keys in the ConfigMap, the last fetch time in
    status (both only for the issuer the spec names now); the next fetch is due at once."""
    keys = keys_of(stored)
    fetched = parse_time(status.last_fetch_time) if status is not None and status.url == url else None
    return IssuerKeys(keys, fetched) if keys and fetched is not None else IssuerKeys()


def issuer_object(rel: TrustRelationship, state: IssuerKeys) -> DesiredObject | None:
    """The ConfigMap keeping the last good keys; none before the first good fetch."""
    if not state.keys:
        return None
    labels = {names.MANAGED_BY: names.MANAGER, names.RELATIONSHIP_LABEL: rel.name, names.ROLE_LABEL: "issuer"}
    return DesiredObject("ConfigMap", names.issuer_configmap(rel.name),
                         {names.ISSUER_JWKS_KEY: to_json({"keys": list(state.keys)})}, labels)


def issuer_publication(rel: TrustRelationship, stored: StoredObject | None) -> Publication | None:
    """The issuer's kept keys as a peer's publication (no CA: the identity only verifies its
    tokens), or ``None`` before the first good fetch."""
    assert rel.issuer is not None
    keys = keys_of(stored)
    if not keys:
        return None
    return Publication(b"", keys, {"name": rel.name, "namespace": rel.namespace, "issuer": rel.issuer.url,
                                   "external": True, "revokedKids": []})


def issuer_check(rel: TrustRelationship, state: IssuerKeys) -> Check:
    """``IssuerReady``: the keys in use, or why the last fetch failed (the field and the URL)."""
    assert rel.issuer is not None
    verdict = state.verdict
    if verdict is None or verdict.reason in (Reason.ISSUER_ACCEPTED, Reason.ISSUER_KEYS_CHANGED):
        return passed(str(Reason.ISSUER_ACCEPTED), f"{len(state.keys)} key(s) of {rel.issuer.url}: "
                                                   f"{', '.join(state.kids)}")
    return stalled(str(verdict.reason), f"spec.between[{rel.issuer.index}].issuer: {verdict.message}")


def issuer_status(rel: TrustRelationship, state: IssuerKeys) -> IssuerStatus:
    assert rel.issuer is not None
    return IssuerStatus(rel.issuer.url, rfc3339(state.fetched_at) if state.fetched_at else None, state.kids)


def bundle_problem(rel: TrustRelationship, namespace: str, stored: StoredObject | None) -> IssuerProblem | None:
    """Why the CA bundle the fetch must trust cannot be read (its content is judged by TLS)."""
    assert rel.issuer is not None
    ref = rel.issuer.ca_bundle
    where = f"caBundleRef: {ref.kind} {namespace}/{ref.name}"
    if stored is None:
        return IssuerProblem(Reason.EXTERNAL_CA_NOT_FOUND, f"{where} does not exist")
    if not stored.data.get(ref.key, b"").strip():
        return IssuerProblem(Reason.EXTERNAL_CA_INVALID, f"{where} has no key {ref.key!r}")
    if b"PRIVATE KEY-----" in stored.data[ref.key]:
        return IssuerProblem(Reason.EXTERNAL_CA_INVALID, f"{where} key {ref.key!r} contains a private key; "
                                                         "give the CA certificate(s) only")
    return None
