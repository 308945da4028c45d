"""Sandboxed Jinja2 templates: turn an identity's material into an application's own config.

Why this package exists: applications rarely read a PEM directory as-is. A Spring module
wants ``application.properties`` lines naming each peer's JWK, kid and roles; nginx
wants a ``server`` block pointing at certificate paths. ``ServiceIdentity.spec.templates``
lets a platform team write that glue once, as a Jinja2 template, and the operator renders
it into the trust Secret next to the material it describes.

Templates are *user input executed inside the operator*, next to every private key it
manages. So rendering is pure (strings in, string out — no loader, no file or network
access) and defensive:

* **Sandbox.** :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` blocks ``_``-prefixed
  and other unsafe attributes (``''.__class__.__mro__``) and mutation of lists and dicts;
  ``StrictUndefined`` turns every typo into an error instead of an empty string that
  would silently produce a config without keys; autoescape is off (the outputs are not
  HTML) and trailing newlines are kept.
* **Bounds, all failing fast with a :class:`TemplateError` that names the bound:**
  the *source size* (:data:`MAX_SOURCE_BYTES`); the *output size* (``max_output_bytes``,
  checked while streaming with ``generate()``, so rendering stops as soon as the running
  size passes the cap); the *value size* — no text a template builds (by ``*``, ``+``,
  ``%``, ``~``, a call or a filter) may be larger than the output cap, no list larger
  than the work limit (shared references counted each time), and amplifying operations
  (``'a' * 10**9``, ``x|center(10**9)``, ``'%999999999d' % 1``, ``s.replace('', big)``,
  ``2 ** 10**8``, joining a list of many references to one big string) are refused
  *before* they allocate; the *work limit* — text captured by
  macros, ``set`` blocks, ``filter`` and ``call`` blocks never reaches the streamed output
  but still costs memory, so everything any output statement emits is counted against
  :data:`WORK_FACTOR` times the output cap; the *time budget* — the clock is checked at every
  loop iteration, call, operator, attribute access, filter and output, so nested loops
  over ``range(100000)`` end after ``time_budget`` seconds instead of running for hours.
  Jinja's own ``MAX_RANGE`` (100000) on ``range()`` stays, and Python's recursion limit
  ends runaway recursive macros. These hooks come from the public sandbox API
  (``call``, ``call_binop`` with ``intercepted_binops``, ``getattr``, ``getitem``) plus a
  small rewrite of the parsed template (``Environment.parse`` → ``Environment.compile``):
  every ``for`` iterable, every output expression and every ``~`` concatenation goes
  through an internal filter whose name cannot be written in a template.
* **Errors without secrets.** Every failure — syntax, undefined, sandbox violation,
  bound — becomes :class:`TemplateError` carrying the template name, the line (from
  ``TemplateSyntaxError.lineno`` or from the innermost traceback frame whose filename is
  this template's private filename; Jinja rewrites template frames to carry template
  lines) and a reason. The context holds key material (``self.jwtPrivateKeyPem``), and
  reasons end up in events and status, so every string value of the context (also in
  its ``repr``/JSON-escaped form) and every piece of twelve or more characters of a long
  one is replaced by ``<redacted>`` in the reason.

``self`` in Jinja
-----------------
``self`` is reserved in Jinja2: the compiler binds it to a ``TemplateReference`` (the
template's blocks) whenever a template mentions it, so ``{{ self.name }}`` would fail
even when the context has a ``self`` key. The contract promises ``self``, so after
parsing, every *variable* named ``self`` (not attribute names such as ``x.self``, not
keyword arguments) is renamed to an internal variable that holds the identity. The
identity is therefore available as both ``self`` and ``identity``. The price: the block
reference ``self.<block>()`` is not available — templates are single strings without
inheritance anyway (there is no loader, so ``extends``/``include``/``import`` fail).

Render context (built by the controller, passed in as a plain dict)
-------------------------------------------------------------------
``self`` / ``identity``
    ``name``, ``namespace``, ``serviceName``, ``spiffeId``, ``issuer``, ``kid``, ``jwk``
    (public JWK dict), ``jwtPrivateKeyPem`` (the identity's own JWT signing key, PKCS#8
    PEM), ``privateJwk`` (the same key as a private JWK dict, with ``d``) and
    ``privateJwkBase64`` (base64 of its compact, sorted JSON), ``caFingerprint``,
    ``caPem``, and ``files``: absolute paths under the mount path — ``dir``, ``cert``,
    ``key``, ``ca``, ``keystore``, ``keystorePassword``, ``truststore``,
    ``truststorePassword``, ``trustBundle``, ``jwtKey``, ``jwtJwk``, ``jwtKid``,
    ``peersJwks``, ``peersJson``.
``peers``
    list of dicts: ``identity``, ``namespace``, ``relationship``, ``kids`` (list),
    ``jwks`` (public JWK dicts), ``roles``, ``audience`` (or None), ``scopes``,
    ``revoked`` (true when every kid of the peer is revoked), ``revokedKids``,
    ``issuer``, ``caPem``, ``caFingerprint``, ``sharedSecretFile`` (or None),
    ``direction`` (``inbound`` | ``outbound`` | ``both``).
``sharedSecrets``
    dict by group (or, for a relationship without one, by peer file key) of dicts: ``name``,
    ``group``, ``encoding``, ``clientId``, ``value`` (the encoded secret, None for ``raw``),
    ``previous`` (during a rotation's grace, else None), ``file``, ``clientIdFile``,
    ``previousFile`` — e.g. ``sharedSecrets["datahub-system"].value``.

Dict keys are read with attribute syntax (``self.files.cert``): Jinja falls back from
attribute to item lookup.

Filters besides Jinja's built-ins
---------------------------------
``b64encode`` (text or bytes → base64 text), ``b64decode`` (base64 → UTF-8 text;
whitespace ignored), ``tojson`` (compact, sorted keys, ``separators=(",", ":")``, ASCII;
replaces Jinja's HTML-oriented ``tojson``), ``properties_escape`` (a Java ``.properties``
value: ``\\``, ``=``, ``:``, ``#``, ``!``, leading spaces, tab/newline/CR/form feed
escaped, and every character outside printable ASCII written as ``\\uXXXX`` — stricter
than "non-Latin-1" because the rendered file is stored as UTF-8 while Java and Spring
read ``.properties`` as ISO-8859-1; ASCII is what both read alike; booleans become
``true``/``false``), ``pem_oneline`` (PEM lines joined with the two characters ``\\n``,
or another ``separator`` — for JSON/YAML strings and env vars; for ``.properties`` use
``properties_escape`` on the PEM itself, which writes real newlines as ``\\n``),
``properties_value`` (like ``properties_escape`` but for a value only: ``=``, ``:``,
``#`` and ``!`` stay as they are, so JSON in a value reads as JSON), ``without`` (a copy
of a mapping without the given keys: ``jwk | without("use")``).
The ``lipsum`` global is removed (an unbounded text generator, useless here).
"""

from __future__ import annotations

from trustwire.render.budget import MAX_OUTPUT_BYTES, MAX_SOURCE_BYTES, WORK_FACTOR
from trustwire.render.engine import render_template
from trustwire.render.errors import TemplateError

__all__ = [
    "MAX_OUTPUT_BYTES",
    "MAX_SOURCE_BYTES",
    "WORK_FACTOR",
    "TemplateError",
    "render_template",
]
