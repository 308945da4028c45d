"""What an OpenID Connect issuer identifier may be (OIDC Discovery 1.0 §2, RFC 8414 §2).

An issuer is an ``https`` URL with a host and no query or fragment; validators compare the
``iss`` claim with it character for character, so it is taken as written (a trailing ``/``
is refused because ``<issuer>/.well-known/openid-configuration`` would then hold ``//``).
The same rule applies to the identities trustwire serves and to external issuers it trusts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from trustwire.model.text import quote

DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_ISSUER_LENGTH = 253


def issuer_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an OIDC issuer identifier, or ``None`` when it can."""
    if len(url) > MAX_ISSUER_LENGTH:
        return f"is {len(url)} characters; an issuer URL has at most {MAX_ISSUER_LENGTH}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{quote(url)} is not a URL"
    if parts.scheme != "https":
        return f"{quote(url)} must be an https:// URL (OpenID Connect issuers are https only)"
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return f"{quote(url)} needs a host and no user information"
    if "?" in url or "#" in url:
        return f"{quote(url)} must have no query or fragment"
    if parts.path.endswith("/"):
        return f"{quote(url)} must not end with '/'"
    return None if port is None or 0 < port < 65536 else f"{quote(url)} has an invalid port"


def discovery_url(issuer: str) -> str:
    """Where an issuer's discovery document is, by OIDC Discovery 1.0 §4."""
    return issuer + DISCOVERY_PATH
