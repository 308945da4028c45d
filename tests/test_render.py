"""trustwire.render: sandboxed Jinja2 templates, proven against programs that are not ours.

* unit tables for filters, ``self``, error lines, redaction, sandbox and bounds;
* a Java-compatible properties parser, checked against ``java.util.Properties`` itself
  when a JDK is present (the ``examples/dpm-dpe-jwt`` golden file and its Java test live
  in ``tests/plan/test_ataccama_properties.py`` and ``tests/interop/test_ataccama_java.py``);
* the ``examples/dgc-jobserver-mtls/reverse-proxy`` nginx template rendered with real
  CA/leaf material and served by a real nginx that must admit DGC and refuse others.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from trustwire import pki
from trustwire.render import MAX_OUTPUT_BYTES, MAX_SOURCE_BYTES, TemplateError, render_template

ROOT = Path(__file__).resolve().parent.parent
MOUNT = "/var/run/trustwire"


# --------------------------------------------------------------------------------------
# Context builders (the contract documented in trustwire.render)
# --------------------------------------------------------------------------------------


def files(mount: str) -> dict[str, str]:
    return {
        "dir": mount,
        "cert": f"{mount}/tls.crt",
        "key": f"{mount}/tls.key",
        "ca": f"{mount}/ca.crt",
        "keystore": f"{mount}/keystore.p12",
        "keystorePassword": f"{mount}/keystore.password",
        "truststore": f"{mount}/truststore.p12",
        "truststorePassword": f"{mount}/truststore.password",
        "trustBundle": f"{mount}/trust-bundle.pem",
        "jwtKey": f"{mount}/jwt.key",
        "jwtJwk": f"{mount}/jwt.jwk",
        "jwtKid": f"{mount}/jwt.kid",
        "peersJwks": f"{mount}/peers.jwks",
        "peersJson": f"{mount}/peers.json",
    }


def identity(
    name: str,
    namespace: str,
    *,
    jwt_key: pki.PrivateKey | None = None,
    ca_pem: str = "",
    ca_fingerprint: str = "",
    mount: str = MOUNT,
) -> dict[str, Any]:
    spiffe = f"spiffe://cluster.local/ns/{namespace}/sid/{name}"
    public = pki.public_jwk(jwt_key, pki.JwtAlgorithm.ES256) if jwt_key is not None else None
    return {
        "name": name,
        "namespace": namespace,
        "serviceName": name,
        "spiffeId": spiffe,
        "issuer": spiffe,
        "kid": public["kid"] if public else None,
        "jwk": public,
        "jwtPrivateKeyPem": pki.private_key_to_pem(jwt_key).decode() if jwt_key is not None else None,
        "caFingerprint": ca_fingerprint,
        "caPem": ca_pem,
        "files": files(mount),
    }


def peer(
    name: str,
    namespace: str,
    *,
    keys: Sequence[pki.PrivateKey],
    revoked: Sequence[pki.PrivateKey] = (),
    roles: Sequence[str] = (),
    relationship: str = "",
    direction: str = "both",
    ca_pem: str = "",
    ca_fingerprint: str = "",
    audience: str | None = None,
) -> dict[str, Any]:
    """A peer as the operator describes it: revoked keys are listed by kid, not published."""
    revoked_kids = sorted(pki.public_jwk(k, pki.JwtAlgorithm.ES256)["kid"] for k in revoked)
    jwks = [pki.public_jwk(k, pki.JwtAlgorithm.ES256) for k in keys]
    return {
        "identity": name,
        "namespace": namespace,
        "relationship": relationship,
        "kids": [j["kid"] for j in jwks],
        "jwks": jwks,
        "roles": list(roles),
        "audience": audience,
        "scopes": [],
        "revoked": bool(revoked_kids) and not jwks,
        "revokedKids": revoked_kids,
        "issuer": f"spiffe://cluster.local/ns/{namespace}/sid/{name}",
        "caPem": ca_pem,
        "caFingerprint": ca_fingerprint,
        "sharedSecretFile": None,
        "direction": direction,
    }


SECRET_PEM = pki.private_key_to_pem(pki.generate_jwt_key(pki.JwtAlgorithm.ES256)).decode()


def small_context() -> dict[str, Any]:
    me = identity("dgc", "governance")
    me["jwtPrivateKeyPem"] = SECRET_PEM
    return {
        "self": me,
        "identity": me,
        "peers": [
            {
                "identity": "jobserver",
                "namespace": "jobs",
                "kids": ["k1", "k2"],
                "roles": ["READ"],
                "revoked": False,
            },
            {"identity": "dpe", "namespace": "processing", "kids": [], "roles": [], "revoked": True},
        ],
    }


def render(source: str, context: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return render_template("t.conf", source, small_context() if context is None else context, **kwargs)


def failure(source: str, context: dict[str, Any] | None = None, **kwargs: Any) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        render(source, context, **kwargs)
    return info.value


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'hello' | b64encode }}", "aGVsbG8="),
        ("{{ 'grüße' | b64encode }}", base64.b64encode("grüße".encode()).decode()),
        ("{{ 'aGVsbG8=' | b64decode }}", "hello"),
        ("{{ 'aGVs\nbG8=' | b64decode }}", "hello"),  # whitespace in the input is ignored
        ("{{ 'grüße' | b64encode | b64decode }}", "grüße"),
        ("{{ {'b': 1, 'a': [True, None, 'x']} | tojson }}", '{"a":[true,null,"x"],"b":1}'),
        ("{{ '<&>' | tojson }}", '"<&>"'),  # not Jinja's HTML-escaping tojson
        ("{{ 'é' | tojson }}", '"\\u00e9"'),
        ("{{ 'a=b:c' | properties_escape }}", "a\\=b\\:c"),
        ("{{ 'C:\\\\dir' | properties_escape }}", "C\\:\\\\dir"),
        ("{{ '  two leading' | properties_escape }}", "\\ \\ two leading"),
        ("{{ 'inner  spaces ' | properties_escape }}", "inner  spaces "),
        ("{{ '#!' | properties_escape }}", "\\#\\!"),
        ("{{ 'é€' | properties_escape }}", "\\u00E9\\u20AC"),
        ("{{ '😀' | properties_escape }}", "\\uD83D\\uDE00"),  # UTF-16 surrogate pair, as Java expects
        ("{{ true | properties_escape }}|{{ 42 | properties_escape }}", "true|42"),
        ("{{ {'a': 'b=c:d'} | tojson | properties_value }}", '{"a":"b=c:d"}'),  # a value keeps = and :
        ("{{ '  #!é\\\\' | properties_value }}", "\\ \\ #!\\u00E9\\\\"),
        ("{{ {'kid': 'k', 'use': 'sig', 'd': 'x'} | without('use', 'd') | tojson }}", '{"kid":"k"}'),
        (
            "{{ '-----BEGIN X-----\nAAAA\nBBBB\n-----END X-----\n' | pem_oneline }}",
            "-----BEGIN X-----\\nAAAA\\nBBBB\\n-----END X-----",
        ),
        (
            "{{ '-----BEGIN X-----\r\nAAAA\r\n-----END X-----' | pem_oneline('|') }}",
            "-----BEGIN X-----|AAAA|-----END X-----",
        ),
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert render(source) == expected


def test_properties_escape_of_control_characters() -> None:
    # Passed through the context: Jinja normalizes a raw CR in the template source to LF.
    assert render_template("t", "{{ v | properties_escape }}", {"v": "l1\nl2\r\tx\f\x01"}) == (
        "l1\\nl2\\r\\tx\\f\\u0001"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ 'not base64!' | b64decode }}", "b64decode: input is not valid base64"),
        ("{{ '/w==' | b64decode }}", "b64decode: decoded data is not UTF-8 text"),
        ("{{ 42 | b64encode }}", "b64encode expects text or bytes, not int"),
        ("{{ [1] | properties_escape }}", "properties_escape expects text, not list"),
        ("{{ [1] | properties_value }}", "properties_value expects text, not list"),
        ("{{ 'k' | without('k') }}", "without expects a mapping, not str"),
    ],
)
def test_filter_errors(source: str, reason: str) -> None:
    assert reason in failure(source).reason


# --------------------------------------------------------------------------------------
# `self`, `identity` and dict access
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ self.name }}.{{ self.namespace }}", "dgc.governance"),
        ("{{ identity.name }}", "dgc"),
        ("{{ self.files.cert }}", f"{MOUNT}/tls.crt"),
        ("{{ self['files']['trustBundle'] }}", f"{MOUNT}/trust-bundle.pem"),
        (
            "{% for p in peers %}{{ p.identity }}:{{ p.kids | join(',') }};{% endfor %}",
            "jobserver:k1,k2;dpe:;",
        ),
        (
            "{% macro show(self) %}{{ self }}{% endmacro %}{{ show('param') }}",
            "param",
        ),  # a parameter named self
        ("{% set self = {'name': 'shadow'} %}{{ self.name }}", "shadow"),
        ("{{ {'self': 'attribute'}.self }}", "attribute"),  # attribute names are not renamed
        ("{{ self is mapping }}", "True"),
        ("{% block b %}in block: {{ self.name }}{% endblock %}", "in block: dgc"),
    ],
)
def test_self_is_the_identity(source: str, expected: str) -> None:
    assert render(source) == expected


def test_identity_alone_is_also_offered_as_self() -> None:
    assert render_template("t", "{{ self.name }}", {"identity": {"name": "x"}}) == "x"


def test_undefined_self_is_reported_as_self() -> None:
    error = failure("{{ self.name }}", {"peers": []})
    assert error.reason == "'self' is undefined"


def test_trailing_newline_is_kept_and_nothing_is_escaped() -> None:
    assert render("<{{ '&' }}>\n") == "<&>\n"


# --------------------------------------------------------------------------------------
# Errors carry template name and line
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("a\nb\n{{ peers.foo( }}\n", 3, r"^syntax error: "),
        ("line 1\n{{ nope }}\n", 2, r"^'nope' is undefined$"),
        ("x\n\n\n{{ peers.foo }}", 4, r"^'list object' has no attribute 'foo'$"),
        (
            "{% for p in peers %}\n{{ p.identity }}\n{{ p.missing }}\n{% endfor %}",
            3,
            r"has no attribute 'missing'",
        ),
        (
            "{% macro m(p) %}\n{{ p.nope }}\n{% endmacro %}\n\n{{ m(peers[0]) }}",
            2,
            r"has no attribute 'nope'",
        ),
        (
            "1\n2\n3\n4\n{{ ''.__class__ }}",
            5,
            r"^not allowed in the sandbox: access to attribute '__class__'",
        ),
        ("{% if true %}\n{{ 1 / 0 }}{% endif %}", 2, r"^ZeroDivisionError"),
        ("ok\n{{ x | nosuchfilter }}", 2, r"No filter named 'nosuchfilter'"),
        ("{% include 'other.conf' %}", 1, r"no loader"),
        ("{% extends 'base.conf' %}", 1, r"no loader"),
    ],
)
def test_errors_name_template_and_line(source: str, line: int, reason: str) -> None:
    error = failure(source)
    assert error.template == "t.conf"
    assert error.line == line
    assert re.search(reason, error.reason), error.reason
    assert str(error) == f"template 't.conf' line {line}: {error.reason}"


def test_error_message_format_matches_the_contract() -> None:
    error = TemplateError("application.properties", 3, "'peers' has no attribute 'foo'")
    assert str(error) == "template 'application.properties' line 3: 'peers' has no attribute 'foo'"
    assert str(TemplateError("a", None, "why")) == "template 'a': why"


def _leaks(message: str, secret: str) -> list[str]:
    """Every 8-character window of the secret's base64 body that occurs in the message."""
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    return [body[i : i + 8] for i in range(len(body) - 7) if body[i : i + 8] in message]


@pytest.mark.parametrize(
    "source",
    [
        "{{ peers[self.jwtPrivateKeyPem] }}",  # undefined name is the key
        "{{ {}[self.jwtPrivateKeyPem] }}",
        "{{ peers[self.jwtPrivateKeyPem[40:90]] }}",  # a fragment of the key
        "{{ peers[self.jwtPrivateKeyPem.split('\n')[1]] }}",
        "{{ self.jwtPrivateKeyPem.foo(1) }}",
        "{{ self.jwtPrivateKeyPem ~ nope }}",
        "{{ self.jwtPrivateKeyPem | b64decode }}",
        "{{ self.jwtPrivateKeyPem.split('\n')[1] | b64decode }}",
        "{{ self.jwtPrivateKeyPem + 1 }}",
        "{{ self.jwtPrivateKeyPem.index('zzzz') }}",
        "{{ self[self.jwtPrivateKeyPem.split('\n')[2]] }}",
    ],
)
def test_errors_never_contain_context_values(source: str) -> None:
    error = failure(source)
    assert _leaks(str(error), SECRET_PEM) == [], str(error)
    assert "BEGIN PRIVATE KEY" not in str(error)


def test_redaction_covers_every_string_value_of_the_context() -> None:
    context = small_context()
    context["peers"][0]["token"] = "s3cr3t-shared-value"
    error = failure("{{ peers[peers[0].token] }}", context)
    assert "s3cr3t-shared-value" not in str(error)
    assert "<redacted>" in error.reason


# --------------------------------------------------------------------------------------
# Sandbox
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ self.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ peers.append(1) }}",  # immutable sandbox: no mutation of the context
        "{{ self.files.update({'cert': '/etc/passwd'}) }}",
        "{{ 'x'.translate({120: 'y'}) }}",
        "{{ lipsum(10) }}",
        "{{ self.jwtPrivateKeyPem.__len__() }}",
    ],
)
def test_sandbox_refuses_unsafe_access(source: str) -> None:
    error = failure(source)
    assert error.line == 1
    assert re.search(r"sandbox|unsafe|is undefined|has no attribute|not available", error.reason), (
        error.reason
    )


# --------------------------------------------------------------------------------------
# Bounds: bombs fail fast with an error naming the bound
# --------------------------------------------------------------------------------------


def ticking_clock(step: float = 0.001) -> Callable[[], float]:
    """A clock that advances ``step`` per reading: the budget becomes a count of checks,
    so a loop without checks would hang (and hit pytest's timeout) instead of failing."""
    counter = itertools.count()
    return lambda: next(counter) * step


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
        "{% set s = 'a' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% set x = i %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ peers | map(attribute='identity') | join }}{% endfor %}",
        "{% for i in range(100000) recursive %}{% if loop.depth < 3 %}{{ loop(range(100000)) }}{% endif %}"
        "{% endfor %}",
    ],
)
def test_time_budget_ends_nested_loops(source: str) -> None:
    error = failure(source, time_budget=2.0, clock=ticking_clock())
    assert re.fullmatch(r"time budget of 2s exceeded", error.reason), error.reason
    assert error.line == 1


@pytest.mark.parametrize(
    ("source", "bound"),
    [
        ("{{ 'a' * 10**9 }}", "output size limit"),
        ("{{ 10**9 * 'a' }}", "output size limit"),
        ("{{ ['a'] * 10**9 }}", "output size limit"),
        ("{{ ('a' * 200000) * 2 }}", "output size limit"),
        ("{{ 2 ** 100000000 }}", "output size limit"),
        ("{{ (10 ** 600000) * (10 ** 600000) }}", "output size limit"),
        (
            "{{ (10 ** 70000) * (10 ** 70000) }}",
            "Exceeds the limit (4300 digits)",
        ),  # Python's own int->str bound
        ("{{ 'x' | center(10**9) }}", "output size limit"),
        ("{{ 'x'.ljust(10**9) }}", "output size limit"),
        ("{{ 'x'.zfill(10**9) }}", "output size limit"),
        ("{{ ('\t' * 1000).expandtabs(10**6) }}", "output size limit"),
        ("{{ ('a\\n' * 100000) | indent(1000) }}", "output size limit"),
        ("{{ 'a b' | wordwrap(1, wrapstring='w' * 200000) }}", "output size limit"),
        ("{{ '%999999999d' % 1 }}", "output size limit"),
        ("{{ '%*d' % (999999999, 1) }}", "output size limit"),
        ("{{ '%999999999d' | format(1) }}", "output size limit"),
        ("{{ '{:999999999}'.format(1) }}", "output size limit"),
        ("{{ '{:{}}'.format(1, 999999999) }}", "output size limit"),
        ("{{ ('a' * 1000).replace('', 'b' * 1000) }}", "output size limit"),
        ("{{ ('a' * 1000) | replace('a', 'b' * 1000) }}", "output size limit"),
        ("{{ (['a' * 200000] * 1) | batch(100000, 'a' * 200000) | list | length }}", "work limit"),
        ("{{ ['x' * 100000] * 100 }}", "output size limit"),
        ("{{ (['x' * 100000] * 3) | join }}", "output size limit"),
        ("{{ ''.join(['x' * 100000] * 3) }}", "output size limit"),
        ("{{ ','.join(range(60000) | map('string')) }}", "output size limit"),
        ("{{ ('x' * 100000) ~ ('x' * 100000) ~ ('x' * 100000) }}", "output size limit"),
        (
            "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "output size limit",
        ),
        (
            "{% set ns = namespace(l=['a' * 1000]) %}"
            "{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
            "output size limit",
        ),
        (
            "{% macro m() %}{% for i in range(100000) %}{{ 'a' * 200000 }}{% endfor %}{% endmacro %}"
            "{{ m() | length }}",
            "work limit",
        ),
        (
            "{% set x %}{% for i in range(100000) %}{{ 'a' * 100000 }}{% endfor %}{% endset %}"
            "{{ x | length }}",
            "work limit",
        ),
        ("{% for i in range(100000) %}{{ 'a' * 1000 }}{% endfor %}", "output size limit"),
        ("{% for i in range(10**6) %}{% endfor %}", "range limit"),
        ("{{ ('é' * 100000) | tojson | length }}", "output size limit"),  # 6x growth, caught on the result
        ("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "recursion"),
    ],
)
def test_amplification_is_refused_before_it_allocates(source: str, bound: str) -> None:
    tracemalloc.start()
    try:
        error = failure(source, time_budget=60.0)  # tracemalloc slows rendering; time is not the point here
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bound in error.reason, error.reason
    assert error.line == 1
    assert peak < 32 * 1024 * 1024, f"peak {peak} bytes while refusing {source!r}"


def test_output_cap_is_exact_in_utf8_bytes() -> None:
    assert render("{{ 'é' * 500 }}", max_output_bytes=1000) == "é" * 500
    error = failure("{{ 'é' * 500 }}x", max_output_bytes=1000)
    assert error.reason == "output exceeds the output size limit of 1000 bytes"
    assert MAX_OUTPUT_BYTES == 256 * 1024


def test_output_cap_error_names_the_line_of_the_loop() -> None:
    error = failure("header\n{% for i in range(100000) %}\n{{ i }}\n{% endfor %}", max_output_bytes=1000)
    assert "output size limit" in error.reason
    assert error.line in (2, 3)


def test_source_size_is_bounded() -> None:
    assert render("x" * MAX_SOURCE_BYTES) == "x" * MAX_SOURCE_BYTES
    error = failure("x" * (MAX_SOURCE_BYTES + 1))
    assert error.line is None
    assert (
        error.reason == f"source is {MAX_SOURCE_BYTES + 1} bytes, above the source size limit of 65536 bytes"
    )


def test_sorting_large_context_data_is_not_a_bomb() -> None:
    """The value bound counts references, but sorting a big context list must still work."""
    context = {"peers": [{"identity": f"p{i:04d}", "caPem": "x" * 1500} for i in range(400)]}
    out = render_template(
        "t",
        "{{ (peers | sort(attribute='identity', reverse=true) | first).identity }}",
        {**context, "self": {}},
    )
    assert out == "p0399"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '{}'.format(3600000) }}", "3600000"),  # big numbers are values, not widths
        ("{{ '%d' % 3600000 }}", "3600000"),
        ("{{ x | default(3600000) }}", "3600000"),
        ("{{ '{:>{}}'.format('a', 3) }}", "  a"),
        ("{{ '%-5s|' % 'ab' }}", "ab   |"),
        ("{{ 'ab'.ljust(4, '.') }}", "ab.."),
        ("{{ ('a' * 3) ~ ('b' * 2) }}", "aaabb"),
        ("{{ (range(3) | list) * 2 }}", "[0, 1, 2, 0, 1, 2]"),
    ],
)
def test_ordinary_values_pass_the_bounds(source: str, expected: str) -> None:
    assert render(source) == expected


def test_joining_an_attribute_of_large_context_objects_is_fine() -> None:
    context = {"self": {}, "peers": [{"identity": f"p{i}", "caPem": "x" * 1500} for i in range(400)]}
    out = render_template("t", "{{ peers | join(',', attribute='identity') }}", context)
    assert out.startswith("p0,p1,") and out.endswith(",p399")


def test_real_clock_budget_is_honoured() -> None:
    error = failure(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", time_budget=0.05
    )
    assert error.reason == "time budget of 0.05s exceeded"


# --------------------------------------------------------------------------------------
# Example templates, and a .properties parser with java.util.Properties semantics
# --------------------------------------------------------------------------------------


def example_template(path: Path, configmap_key: str) -> str:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConfigMap" and configmap_key in doc.get("data", {}):
            return str(doc["data"][configmap_key])
    raise AssertionError(f"{configmap_key} not found in {path}")


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
        i += 2
    # Join UTF-16 surrogate pairs written as two \\u escapes.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def parse_properties(text: str) -> dict[str, str]:
    """``java.util.Properties.load`` semantics, independent of trustwire's code:
    comments, continuation lines, ``=``/``:``/whitespace separators and escapes."""
    props: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        j = 0
        while j < len(line) and line[j] not in "=: \t\f":
            j += 2 if line[j] == "\\" else 1
        key, rest = line[:j], line[j:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        props[_unescape(key)] = _unescape(rest)
    return props


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=b\n", {"a": "b"}),
        ("a = b\n", {"a": "b"}),
        ("a:b\n# c=d\n! e=f\n", {"a": "b"}),
        ("a b c\n", {"a": "b c"}),
        ("a=\\ lead\n", {"a": " lead"}),
        ("a=x\\\n    y\n", {"a": "xy"}),
        ("a\\=b=c\\:d\n", {"a=b": "c:d"}),
        ("a=\\u00E9\\uD83D\\uDE00\\n\n", {"a": "é😀\n"}),
    ],
)
def test_properties_parser_follows_java(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize(
    "value", ["plain", "a=b:c", "  leading", "#!comment-ish", "back\\slash", "new\nline\ttab", "é€😀", " "]
)
def test_properties_escape_round_trips_through_a_java_parser(value: str) -> None:
    line = render_template("t", "k={{ v | properties_escape }}\n", {"v": value})
    assert line.isascii()
    assert parse_properties(line) == {"k": value}


JAVA_PROPERTIES_DUMP = """
import java.io.FileInputStream;
import java.util.Base64;
import java.util.Properties;
import java.util.TreeSet;

public class Dump {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) { props.load(in); }
        Base64.Encoder b64 = Base64.getEncoder();
        for (String key : new TreeSet<>(props.stringPropertyNames())) {
            System.out.println(b64.encodeToString(key.getBytes("UTF-8")) + " "
                + b64.encodeToString(props.getProperty(key).getBytes("UTF-8")));
        }
    }
}
"""


@pytest.mark.interop
def test_java_reads_escaped_properties_like_our_parser(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no JDK on this machine (java not on PATH)")
    rendered = render_template(
        "extra", "weird={{ v | properties_escape }}\nvalue={{ v | properties_value }}\n",
        {"v": "  a=b:c #! \\ é€😀\nnext"},
    )
    (tmp_path / "application.properties").write_text(rendered, encoding="iso-8859-1")  # what Java reads
    (tmp_path / "Dump.java").write_text(JAVA_PROPERTIES_DUMP)
    result = subprocess.run(
        [java, str(tmp_path / "Dump.java"), str(tmp_path / "application.properties")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    from_java = {
        base64.b64decode(k).decode(): base64.b64decode(v).decode()
        for k, v in (line.split(" ") for line in result.stdout.splitlines())
    }
    assert from_java == parse_properties(rendered)
    assert from_java["weird"] == from_java["value"] == "  a=b:c #! \\ é€😀\nnext"


# --------------------------------------------------------------------------------------
# The dgc-jobserver-mtls reverse-proxy example: a real nginx admits DGC, refuses others
# --------------------------------------------------------------------------------------

NGINX = Path("/usr/sbin/nginx")
NGINX_TEMPLATE = ROOT / "examples" / "dgc-jobserver-mtls" / "reverse-proxy" / "20-nginx-template.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Party:
    """An identity's CA and leaf, written to its own directory like a trustwire mount."""

    def __init__(self, name: str, namespace: str, directory: Path, now: datetime) -> None:
        self.ca_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
        self.ca = pki.create_ca(self.ca_key, common_name=f"{name} CA", now=now, lifetime=timedelta(days=30))
        self.key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
        self.leaf = pki.create_leaf(
            self.ca,
            self.ca_key,
            self.key.public_key(),
            common_name=name,
            dns_names=[
                name,
                f"{name}.{namespace}",
                f"{name}.{namespace}.svc",
                f"{name}.{namespace}.svc.cluster.local",
            ],
            uri_sans=[f"spiffe://cluster.local/ns/{namespace}/sid/{name}"],
            now=now,
            lifetime=timedelta(days=1),
        )
        self.dir = directory
        directory.mkdir(parents=True)
        (directory / "tls.crt").write_bytes(pki.certs_to_pem([self.leaf, self.ca]))
        (directory / "tls.key").write_bytes(pki.private_key_to_pem(self.key))
        (directory / "ca.crt").write_bytes(pki.cert_to_pem(self.ca))
        os.chmod(directory / "tls.key", 0o600)

    def sibling_leaf(self, name: str, directory: Path, now: datetime) -> Path:
        """Another service's leaf from *this* CA (e.g. a second workload of the same identity's CA)."""
        key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
        leaf = pki.create_leaf(
            self.ca,
            self.ca_key,
            key.public_key(),
            common_name=name,
            dns_names=[name],
            uri_sans=[],
            now=now,
            lifetime=timedelta(days=1),
        )
        directory.mkdir(parents=True)
        (directory / "tls.crt").write_bytes(pki.certs_to_pem([leaf, self.ca]))
        (directory / "tls.key").write_bytes(pki.private_key_to_pem(key))
        return directory


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({h: self.headers.get(h) for h in ("X-Client-Verify", "X-Client-Subject")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _https_get(port: int, ca: Path, client: Path | None) -> tuple[int, str]:
    """GET / with Python's ssl: verify the server against ``ca`` and the jobserver name."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client / "tls.crt"), str(client / "tls.key"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="jobserver.jobs.svc") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: jobserver.jobs.svc\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(errors="replace")


@pytest.fixture
def nginx_proxy(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    if not NGINX.exists():
        pytest.skip(f"{NGINX} is not installed (CI installs nginx)")
    now = datetime.now(UTC)
    jobserver = _Party("jobserver", "jobs", tmp_path / "jobserver", now)
    dgc = _Party("dgc", "governance", tmp_path / "dgc", now)
    outsider = _Party("outsider", "elsewhere", tmp_path / "outsider", now)
    same_ca = jobserver.sibling_leaf("jobserver-worker", tmp_path / "same-ca", now)
    # What trustwire puts into jobserver's trust Secret: the peers' CAs only.
    (jobserver.dir / "trust-bundle.pem").write_bytes(pki.cert_to_pem(dgc.ca))

    me = identity(
        "jobserver",
        "jobs",
        ca_pem=pki.cert_to_pem(jobserver.ca).decode(),
        ca_fingerprint=pki.fingerprint_sha256(jobserver.ca),
        mount=str(jobserver.dir),
    )
    context = {
        "self": me,
        "identity": me,
        "peers": [
            peer(
                "dgc",
                "governance",
                keys=[],
                relationship="governance/dgc-jobserver",
                direction="inbound",
                ca_pem=pki.cert_to_pem(dgc.ca).decode(),
                ca_fingerprint=pki.fingerprint_sha256(dgc.ca),
            )
        ],
    }
    server_block = render_template(
        "jobserver-mtls.conf", example_template(NGINX_TEMPLATE, "server.conf.j2"), context
    )
    assert "listen 8443 ssl;" in server_block and "proxy_pass http://127.0.0.1:8080;" in server_block

    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = _free_port()
    server_block = server_block.replace("listen 8443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    server_block = server_block.replace("127.0.0.1:8080", f"127.0.0.1:{backend.server_address[1]}")
    run = tmp_path / "nginx"
    run.mkdir()
    (run / "jobserver-mtls.conf").write_text(server_block)
    (run / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {run}/nginx.pid;\nerror_log {run}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {run}/body;\n  proxy_temp_path {run}/proxy;\n"
        f"  fastcgi_temp_path {run}/fastcgi;\n  uwsgi_temp_path {run}/uwsgi;\n  scgi_temp_path {run}/scgi;\n"
        f"  include {run}/jobserver-mtls.conf;\n}}\n"
    )
    subprocess.run(
        [str(NGINX), "-t", "-p", str(run), "-e", f"{run}/error.log", "-c", f"{run}/nginx.conf"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    process = subprocess.Popen(
        [str(NGINX), "-p", str(run), "-e", f"{run}/error.log", "-c", f"{run}/nginx.conf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {(run / 'error.log').read_text()}") from None
                time.sleep(0.05)
        yield (
            port,
            {
                "jobserver-ca": jobserver.dir / "ca.crt",
                "dgc": dgc.dir,
                "outsider": outsider.dir,
                "same-ca": same_ca,
            },
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        backend.shutdown()
        backend.server_close()


@pytest.mark.interop
def test_nginx_admits_dgc_and_refuses_everyone_else(nginx_proxy: tuple[int, dict[str, Path]]) -> None:
    port, paths = nginx_proxy
    status, body = _https_get(port, paths["jobserver-ca"], paths["dgc"])
    assert status == 200
    seen = json.loads(body)
    assert seen["X-Client-Verify"] == "SUCCESS"
    assert "CN=dgc" in seen["X-Client-Subject"]

    for client in ("outsider", "same-ca", None):  # other CA, jobserver's own CA, no certificate
        try:
            status, body = _https_get(port, paths["jobserver-ca"], paths[client] if client else None)
        except (ssl.SSLError, ConnectionError) as exc:  # a handshake failure is a refusal too
            assert client is not None, exc
            continue
        assert status == 400, (client, status, body)
        assert "SSL certificate" in body, body  # nginx's own refusal page, not the backend
