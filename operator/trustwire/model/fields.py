"""The declared fields of each spec: the single list the CRD schemas in ``crds/`` must match.

Leaves are the accepted JSON types; nested mappings are objects; a one-element list means
"array of". Parsers reject fields not declared here (a typo such as ``dnsName`` must not be
silently ignored), and ``tests/test_model_crd_drift.py`` checks that these tables and the CRD
schemas declare exactly the same paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_DURATION = "duration"
_STR = "string"
_BOOL = "boolean"
#: an object of string values under any keys (labels, annotations)
_STRING_MAP = "object"

IDENTITY_FIELDS: dict[str, Any] = {
    "serviceName": _STR,
    "dnsNames": [_STR],
    "trustDomain": _STR,
    "ca": {
        "source": _STR,
        "secretRef": {"name": _STR},
        "keyAlgorithm": _STR,
        "duration": _DURATION,
    },
    "certificate": {"keyAlgorithm": _STR, "duration": _DURATION, "renewBefore": _DURATION},
    "jwt": {
        "enabled": _BOOL,
        "algorithm": _STR,
        "rotationPeriod": _DURATION,
        "revokedKids": [_STR],
        "issuer": _STR,
        "discovery": _BOOL,
    },
    "keystores": {
        "formats": [_STR],
        "passwordSecretRef": {"name": _STR, "key": _STR},
        "legacyPKCS12": _BOOL,
    },
    "workloads": [{"kind": _STR, "name": _STR, "containers": [_STR], "rollout": _STR}],
    "mountPath": _STR,
    "templates": [{"name": _STR, "inline": _STR, "configMapRef": {"name": _STR, "key": _STR}}],
    "acceptFrom": {"namespaces": [_STR]},
    "deletionPolicy": _STR,
    "secretTemplate": {"labels": _STRING_MAP, "annotations": _STRING_MAP},
    "enrollment": {"enabled": _BOOL},
}

RELATIONSHIP_FIELDS: dict[str, Any] = {
    "between": [{"identity": _STR, "namespace": _STR,
                 "external": {"name": _STR, "caBundleRef": {"kind": _STR, "name": _STR, "key": _STR}},
                 "issuer": {"url": _STR, "caBundleRef": {"kind": _STR, "name": _STR, "key": _STR},
                            "audience": _STR, "scopes": [_STR]}}],
    "initiator": _STR,
    "mtls": {"enabled": _BOOL},
    "jwt": {"enabled": _BOOL, "roles": [_STR], "audience": _STR, "scopes": [_STR]},
    "sharedSecret": {"enabled": _BOOL, "encoding": _STR, "clientId": _STR, "group": _STR,
                     "gracePeriod": _DURATION},
}


ENROLLMENT_FIELDS: dict[str, Any] = {
    "identity": _STR,
    "subject": {"commonName": _STR, "organization": [_STR], "organizationalUnit": [_STR]},
    "tokenTTL": _DURATION,
    "certificate": {"duration": _DURATION},
    "revoked": _BOOL,
}


def field_paths(fields: Mapping[str, Any], prefix: str = "spec") -> set[str]:
    """All dotted paths declared by a field table (``[]`` marks array items)."""
    paths: set[str] = set()
    for key, kind in fields.items():
        path = f"{prefix}.{key}"
        paths.add(path)
        if isinstance(kind, list):
            item = kind[0]
            if isinstance(item, dict):
                paths |= field_paths(item, f"{path}[]")
        elif isinstance(kind, dict):
            paths |= field_paths(kind, path)
    return paths

