"""Secret-leak audit: no secret material anywhere outside the Secret(s) that own it.

*Needles* are collected from every version (as the test's own watches recorded them,
:class:`tests.integration.harness.History`) of every Secret trustwire manages:

* every private key found in any value (PEM blocks of any kind): its PKCS#8 and
  traditional DER (raw bytes and base64, with the three base64 alignments), each line of
  its PEM body, the PEM block itself, and its private numbers — JWK members ``d``/``p``/
  ``q``/``dp``/``dq``/``qi`` (base64url and base64), hex and decimal;
* every JWK ``d``/``p``/``q``/``dp``/``dq``/``qi`` member (``jwt.jwk``, ``*.jwk``);
* keystore and truststore passwords;
* shared secrets (``shared.key``, ``shared-*.key``): raw bytes, base64, base64url, hex and
  Python ``repr`` escapes.

Each needle has an *owner*: the set of Secrets where it may legitimately live. A key of an
identity may live in that identity's ``-ca``/``-credentials``/``-trust`` Secrets (rendered
templates may contain the identity's own key); a relationship's shared secret in the
relationship's ``-shared`` Secret and in the trust Secrets of its two identities.

*Haystacks* are everything else an operator writes or says: log records (message and
exception text), Events, every status of every object, ConfigMaps, workloads, every
object's metadata (Secrets' annotations and labels included), Secrets of other owners,
every request the operator sent (its line, and its body: a refused write was stored
nowhere, yet it was said), and any extra text a test adds (exception messages). A needle
found in a haystack is a :class:`Finding`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.cluster.proxy import Recorded
from tests.integration.harness import History
from trustwire import names

PEM_PRIVATE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n(.*?)-----END \1-----", re.S)
#: the private members of asymmetric JWKs, and ``k`` of a symmetric (``oct``) one
JWK_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
_SECRET_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
#: Needles shorter than this are too likely to appear by chance.
MIN_NEEDLE = 16

Owner = frozenset[tuple[str, str]]  # {(namespace, secret name)}


@dataclasses.dataclass(frozen=True)
class Needle:
    value: bytes
    what: str  # e.g. "PKCS#8 DER (base64) of the private key in team/alpha-trustwire-credentials[tls.key]"
    owner: Owner


@dataclasses.dataclass(frozen=True)
class Finding:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.what} found in {self.where}"


def _b64_variants(raw: bytes) -> list[bytes]:
    """base64 of ``raw`` at each of the three alignments it can take inside a longer base64 text."""
    out = []
    for shift in range(3):
        text = base64.b64encode(raw[shift:])
        out.append(text[: len(text) - (len(text) % 4) - 4] if shift else text.rstrip(b"="))
    return [v for v in out if len(v) >= MIN_NEEDLE]


def _uint_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _number_needles(label: str, name: str, value: int) -> list[tuple[bytes, str]]:
    raw = _uint_bytes(value)
    return [(base64.urlsafe_b64encode(raw).rstrip(b"="), f"{label} {name} (base64url)"),
            (base64.b64encode(raw).rstrip(b"="), f"{label} {name} (base64)"),
            (raw.hex().encode(), f"{label} {name} (hex)"),
            (str(value).encode(), f"{label} {name} (decimal)")]


def _without_public_parts(needles: list[tuple[bytes, str]], key: Any) -> list[tuple[bytes, str]]:
    """Drop needles that are pieces of the *public* key (a private key's encoding embeds its
    public key, which certificates rightly publish: e.g. the last PEM lines of an EC key)."""
    public = key.public_key()
    parts = [public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)]
    if isinstance(public, ec.EllipticCurvePublicKey):
        parts.append(public.public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint))
    elif isinstance(public, rsa.RSAPublicKey):
        parts.append(_uint_bytes(public.public_numbers().n))
    texts: list[bytes] = []
    for raw in parts:
        texts += [raw, raw.hex().encode()] + [base64.b64encode(raw[shift:]) for shift in range(3)]
    return [(value, what) for value, what in needles if not any(value in text for text in texts)]


def private_key_needles(pem_block: bytes, label: str) -> list[tuple[bytes, str]]:
    """Every encoding of one PEM private key block worth looking for."""
    out: list[tuple[bytes, str]] = [(pem_block.strip(), f"PEM block of {label}")]
    match = PEM_PRIVATE.search(pem_block)
    if match:
        for line in match.group(2).split(b"\n"):
            if len(line.strip()) >= MIN_NEEDLE:
                out.append((line.strip(), f"a PEM line of {label}"))
    try:
        key = serialization.load_pem_private_key(pem_block, password=None)
    except (ValueError, TypeError, Exception):
        return out
    ders = {"PKCS#8 DER": key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())}
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        ders["traditional DER"] = key.private_bytes(serialization.Encoding.DER,
                                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption())
    for kind, der in ders.items():
        out.append((der, f"{kind} of {label}"))
        out += [(v, f"{kind} (base64) of {label}") for v in _b64_variants(der)]
        out.append((der.hex().encode(), f"{kind} (hex) of {label}"))
    out = _without_public_parts(out, key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        out += _number_needles(label, "d", key.private_numbers().private_value)
    elif isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        members = (("d", n.d), ("p", n.p), ("q", n.q), ("dp", n.dmp1), ("dq", n.dmq1), ("qi", n.iqmp))
        for name, value in members:
            out += _number_needles(label, name, value)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        out += [(raw, f"{label} raw private bytes"),
                (base64.urlsafe_b64encode(raw).rstrip(b"="), f"{label} d (base64url)"),
                (base64.b64encode(raw).rstrip(b"="), f"{label} d (base64)"),
                (raw.hex().encode(), f"{label} (hex)")]
    return out


def _raw_secret_needles(raw: bytes, label: str) -> list[tuple[bytes, str]]:
    return [(raw, f"{label} (raw)"), (base64.b64encode(raw).rstrip(b"="), f"{label} (base64)"),
            (base64.urlsafe_b64encode(raw).rstrip(b"="), f"{label} (base64url)"),
            (raw.hex().encode(), f"{label} (hex)"), (repr(raw)[2:-1].encode(), f"{label} (repr)"),
            *[(v, f"{label} (base64, inside a longer text)") for v in _b64_variants(raw)]]


def _decode(value: Any) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (ValueError, binascii.Error):
        return None


class LeakAudit:
    """Collect needles and haystacks, then :meth:`findings`."""

    def __init__(self) -> None:
        self.needles: list[Needle] = []
        self._needle_keys: set[tuple[bytes, Owner]] = set()
        #: (where, content, the Secret it is in — None for anything that is not a Secret)
        self.haystacks: list[tuple[str, bytes, tuple[str, str] | None]] = []

    # ---- needles ------------------------------------------------------------------------
    def add_needle(self, value: bytes, what: str, owner: Owner) -> None:
        if len(value) < MIN_NEEDLE or (value, owner) in self._needle_keys:
            return
        self._needle_keys.add((value, owner))
        self.needles.append(Needle(value, what, owner))

    def add_secret_values(self, data: Mapping[str, bytes], where: str, owner: Owner) -> None:
        """Needles from one Secret's decoded data."""
        for key, value in data.items():
            label = f"{where}[{key}]"
            for match in PEM_PRIVATE.finditer(value):
                for needle, what in private_key_needles(match.group(0), f"the private key in {label}"):
                    self.add_needle(needle, what, owner)
            if key.endswith(".jwk") or key.endswith(".jwks"):
                self._jwk_needles(value, label, owner)
            if key.endswith(".password"):
                self.add_needle(value.strip(), f"the password in {label}", owner)
            # a shared secret is harvested where it is born (``shared.key``/``previous.key`` of the
            # relationship's or group's Secret); the ``shared-*.key`` copies are where it may go
            if key in (names.SHARED_KEY, names.SHARED_PREVIOUS_KEY):
                for needle, what in _raw_secret_needles(value, f"the shared secret in {label}"):
                    self.add_needle(needle, what, owner)
            # an enrollment token: whole, and its random part (which alone would let one forge it)
            if key == names.ENROLLMENT_TOKEN_KEY and value.count(b".") == 2:
                self.add_needle(value, f"the one-time token in {label}", owner)
                self.add_needle(value.rsplit(b".", 1)[1], f"the one-time token's random part in {label}", owner)

    def _jwk_needles(self, value: bytes, label: str, owner: Owner) -> None:
        try:
            doc = json.loads(value)
        except ValueError:
            return
        keys = doc.get("keys", [doc]) if isinstance(doc, dict) else []
        for jwk in keys if isinstance(keys, list) else []:
            for member in JWK_PRIVATE_MEMBERS:
                text = jwk.get(member) if isinstance(jwk, dict) else None
                if isinstance(text, str):
                    self.add_needle(text.encode(), f"JWK member {member} in {label}", owner)
                    padded = text + "=" * (-len(text) % 4)
                    try:
                        raw = base64.urlsafe_b64decode(padded)
                    except (ValueError, binascii.Error):
                        continue
                    self.add_needle(base64.b64encode(raw).rstrip(b"="),
                                    f"JWK member {member} (base64) in {label}", owner)
                    self.add_needle(raw.hex().encode(), f"JWK member {member} (hex) in {label}", owner)
                    if member == "k":  # an HMAC key is the bytes of jwt.key itself: printable text
                        self.add_needle(raw, f"JWK member k (the key) in {label}", owner)

    # ---- haystacks ----------------------------------------------------------------------
    def add_text(self, where: str, text: str | bytes, place: tuple[str, str] | None = None) -> None:
        content = text.encode("utf-8", "backslashreplace") if isinstance(text, str) else text
        self.haystacks.append((where, content, place))

    def add_log_records(self, records: Iterable[logging.LogRecord]) -> None:
        formatter = logging.Formatter()
        for record in records:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + formatter.formatException(record.exc_info)
            if record.exc_text:
                text += "\n" + record.exc_text
            if record.stack_info:
                text += "\n" + record.stack_info
            self.add_text(f"log {record.name}:{record.levelname}", text)

    def add_history(self, history: History) -> None:
        """Needles from every version of every managed Secret; haystacks from every version of
        everything else (and of the Secrets, for other owners' material)."""
        relationships: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for (plural, ns, name), versions in history.versions.items():
            if plural == "trustrelationships":
                refs = {(str(b.get("namespace") or ns), str(b.get("identity")))
                        for body in versions if body is not None
                        for b in (body.get("spec") or {}).get("between") or [] if isinstance(b, Mapping)}
                relationships[(ns, name)] = sorted(refs)
        for (plural, ns, name), versions in history.versions.items():
            for index, body in enumerate(versions):
                if body is None:
                    continue
                where = f"{plural} {ns}/{name} (version {index})"
                if plural == "secrets":
                    self._add_secret(body, where, ns, name, self._secret_owner(body, ns, name, relationships))
                else:
                    self.add_text(where, json.dumps(body, default=str))

    def _add_secret(self, body: Mapping[str, Any], where: str, ns: str, name: str, owner: Owner) -> None:
        data = {k: v for k, v in ((k, _decode(v)) for k, v in (body.get("data") or {}).items()) if v is not None}
        string_data = {k: str(v).encode() for k, v in (body.get("stringData") or {}).items()}
        all_data = {**data, **string_data}
        if names.is_managed((body.get("metadata") or {}).get("labels")):
            self.add_secret_values(all_data, f"Secret {ns}/{name}", owner)
        for key, value in all_data.items():
            self.add_text(f"{where} data[{key}]", value, (ns, name))
        self.add_text(f"{where} metadata", json.dumps(body.get("metadata") or {}))
        rest = {k: v for k, v in body.items() if k not in ("data", "stringData", "metadata")}
        self.add_text(f"{where} (other fields)", json.dumps(rest))

    def add_requests(self, requests: Iterable[Recorded]) -> None:
        """What the operator sent, refused requests included (the server stored none of
        those): every request line (API servers log them), and every body — the values in a
        Secret's ``data`` count as that Secret's, the rest as no Secret's."""
        for index, request in enumerate(requests):
            where = f"request {index} {request.method} {request.path}"
            self.add_text(f"{where} (line)", f"{request.path}?{json.dumps(request.params)} {request.user_agent}")
            body, match = request.data, _SECRET_PATH.match(request.path)
            if match is not None and isinstance(body, Mapping):
                place = (match.group(1), match.group(2) or str((body.get("metadata") or {}).get("name")))
                for key, value in (body.get("data") or {}).items():
                    decoded = _decode(value)
                    self.add_text(f"{where} data[{key}]", decoded if decoded is not None else str(value), place)
                self.add_text(f"{where} (other fields)", json.dumps({k: v for k, v in body.items() if k != "data"}))
            elif body is not None:
                self.add_text(f"{where} (body)", json.dumps(body, default=str))

    @staticmethod
    def _secret_owner(body: Mapping[str, Any], ns: str, name: str,
                      relationships: Mapping[tuple[str, str], list[tuple[str, str]]]) -> Owner:
        labels = (body.get("metadata") or {}).get("labels") or {}
        if not names.is_managed(labels):
            return frozenset({(ns, name)})
        if labels.get(names.IDENTITY_LABEL):
            ident = labels[names.IDENTITY_LABEL]
            return frozenset({(ns, names.ca_secret(ident)), (ns, names.credentials_secret(ident)),
                              (ns, names.trust_secret(ident)), (ns, names.enrollment_ca_secret(ident))})
        if labels.get(names.RELATIONSHIP_LABEL):
            rel = labels[names.RELATIONSHIP_LABEL]
            return frozenset({(ns, name), *((i_ns, names.trust_secret(i)) for i_ns, i in
                                            relationships.get((ns, rel), []))})
        return frozenset({(ns, name)})

    # ---- verdict ------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """Every needle found outside its owner's Secrets.

        One pass per distinct haystack content: a window of MIN_NEEDLE bytes slides over it
        and is looked up among the needles' prefixes (history repeats the same contents, so
        identical haystacks are searched once).
        """
        by_prefix: dict[bytes, list[Needle]] = {}
        for needle in self.needles:
            by_prefix.setdefault(needle.value[:MIN_NEEDLE], []).append(needle)
        distinct: dict[bytes, list[tuple[str, tuple[str, str] | None]]] = {}
        for where, content, place in self.haystacks:
            distinct.setdefault(content, []).append((where, place))
        out: list[Finding] = []
        seen: set[tuple[str, str]] = set()
        get = by_prefix.get
        for content, places in distinct.items():
            hits: set[Needle] = set()
            for i in range(len(content) - MIN_NEEDLE + 1):
                candidates = get(content[i:i + MIN_NEEDLE])
                if candidates:
                    hits.update(n for n in candidates if content.startswith(n.value, i))
            for needle in hits:
                for where, place in places:
                    if place is not None and place in needle.owner:
                        continue  # a Secret that owns this material
                    if (where, needle.what) not in seen:
                        seen.add((where, needle.what))
                        out.append(Finding(where, needle.what))
        return sorted(out, key=lambda f: (f.where, f.what))
