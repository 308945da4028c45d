"""User templates rendered into the trust Secret, within one time budget per identity.

Each template ends in one :class:`TemplateOutcome`: ``Rendered``; ``Kept`` (its source is
missing or it failed: the last good output stays in place, so a typo never empties a
mounted file); or ``Absent`` (it failed before it ever rendered). The clock of the budget
is an injected monotonic timer, so a plan can be replayed.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trustwire import pki
from trustwire.model import ServiceIdentity, TemplateSpec
from trustwire.plan.conditions import Check, passed, stalled, waiting
from trustwire.plan.jwt import JwtMaterial
from trustwire.plan.material import CAMaterial, StoredObject
from trustwire.render import TemplateError, render_template

#: Rendering time for all of one identity's templates together (not per template), so that
#: twenty template bombs cost one budget, not twenty.
TEMPLATE_BUDGET = 4.0
#: ...and for any single template, so one bomb does not starve the others.
TEMPLATE_BUDGET_EACH = 1.0

Timer = Callable[[], float]


class TemplateOutcome(enum.StrEnum):
    RENDERED = "Rendered"
    KEPT = "Kept"
    ABSENT = "Absent"


def context(ident: ServiceIdentity, ca: CAMaterial | None, jwt: JwtMaterial | None,
            peers: Sequence[Mapping[str, Any]], shared_secrets: Mapping[str, Mapping[str, Any]],
            enrolled: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    d = ident.mount_path
    me = {
        "name": ident.name, "namespace": ident.namespace, "serviceName": ident.service_name,
        "spiffeId": ident.spiffe_id, "issuer": ident.issuer,
        "kid": jwt.kid if jwt else None, "jwk": jwt.public if jwt else None,
        "jwtPrivateKeyPem": jwt.key_pem.decode() if jwt else None,
        # the keypair as a private JWK, and base64 of its compact JSON (what e.g. Ataccama's
        # generator.key takes); the trust Secret they render into is the identity's own
        "privateJwk": jwt.private if jwt else None,
        "privateJwkBase64": _b64_json(jwt.private) if jwt else None,
        "caFingerprint": pki.fingerprint_sha256(ca.cert) if ca else None,
        "caPem": ca.cert_pem.decode() if ca else None,
        "files": {
            "dir": d, "cert": f"{d}/tls.crt", "key": f"{d}/tls.key", "ca": f"{d}/ca.crt",
            "keystore": f"{d}/keystore.p12", "keystorePassword": f"{d}/keystore.password",
            "truststore": f"{d}/truststore.p12", "truststorePassword": f"{d}/truststore.password",
            "trustBundle": f"{d}/trust-bundle.pem", "jwtKey": f"{d}/jwt.key", "jwtJwk": f"{d}/jwt.jwk",
            "jwtKid": f"{d}/jwt.kid", "peersJwks": f"{d}/peers.jwks", "peersJson": f"{d}/peers.json",
        },
    }
    # the trust Secret is the identity's own: shared values render there and nowhere else
    return {"self": me, "identity": me, "peers": list(peers), "sharedSecrets": dict(shared_secrets),
            "enrolled": [{"name": e["enrollment"], **e} for e in enrolled]}


def _b64_json(value: Mapping[str, str]) -> str:
    compact = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(compact.encode()).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Rendered:
    outcome: TemplateOutcome
    output: bytes | None
    failure: Check | None = None


def _render_one(tpl: TemplateSpec, ident: ServiceIdentity, source: str | None, ctx: dict[str, Any],
                stored: StoredObject | None, remaining: float) -> Rendered:
    old = stored.data.get(tpl.name) if stored else None
    kept = TemplateOutcome.KEPT if old is not None else TemplateOutcome.ABSENT
    if source is None:
        ref = tpl.config_map
        where = f"ConfigMap {ident.namespace}/{ref.name} key {ref.key}" if ref else "inline source"
        return Rendered(kept, old, waiting("TemplateSourceMissing", f"template {tpl.name!r}: {where} does not exist"))
    try:
        if remaining <= 0:
            raise TemplateError(tpl.name, None, f"the identity's {TEMPLATE_BUDGET:.0f}s rendering "
                                                "budget for all its templates is used up")
        text = render_template(tpl.name, source, ctx, time_budget=min(remaining, TEMPLATE_BUDGET_EACH))
    except TemplateError as exc:
        return Rendered(kept, old, stalled("TemplateError", str(exc)))
    return Rendered(TemplateOutcome.RENDERED, text.encode())


def render_all(ident: ServiceIdentity, sources: Mapping[str, str | None], ctx: dict[str, Any],
               stored: StoredObject | None, timer: Timer) -> tuple[dict[str, bytes], Check]:
    """Every template's output and ``TemplatesReady`` (the first failure, in spec order)."""
    started = timer()
    data: dict[str, bytes] = {}
    failures: list[Check] = []
    for tpl in ident.templates:
        source = sources.get(tpl.name)
        result = _render_one(tpl, ident, source, ctx, stored,
                             TEMPLATE_BUDGET - (timer() - started) if source is not None else TEMPLATE_BUDGET)
        if result.output is not None:
            data[tpl.name] = result.output
        if result.failure is not None:
            failures.append(result.failure)
    return data, failures[0] if failures else passed("Rendered", f"{len(ident.templates)} template(s) rendered")
