"""Sandboxed Jinja2 templates: turn an identity's material into an application's own config.

Why this module exists: applications rarely read a PEM directory as-is. A Spring module
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
    PEM), ``caFingerprint``, ``caPem``, and ``files``: absolute paths under the mount
    path — ``dir``, ``cert``, ``key``, ``ca``, ``keystore``, ``keystorePassword``,
    ``truststore``, ``truststorePassword``, ``trustBundle``, ``jwtKey``, ``jwtJwk``,
    ``jwtKid``, ``peersJwks``, ``peersJson``.
``peers``
    list of dicts: ``identity``, ``namespace``, ``relationship``, ``kids`` (list),
    ``jwks`` (public JWK dicts), ``roles``, ``audience`` (or None), ``scopes``,
    ``revoked`` (true when every kid of the peer is revoked), ``revokedKids``,
    ``issuer``, ``caPem``, ``caFingerprint``, ``sharedSecretFile`` (or None),
    ``direction`` (``inbound`` | ``outbound`` | ``both``).

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
``properties_escape`` on the PEM itself, which writes real newlines as ``\\n``).
The ``lipsum`` global is removed (an unbounded text generator, useless here).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import time
import types
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from typing import Any, NoReturn, cast

import jinja2
from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = [
    "MAX_OUTPUT_BYTES",
    "MAX_SOURCE_BYTES",
    "WORK_FACTOR",
    "TemplateError",
    "render_template",
]

MAX_OUTPUT_BYTES = 256 * 1024
MAX_SOURCE_BYTES = 64 * 1024
#: Everything emitted by output statements anywhere (including macro bodies and
#: captured blocks) may be at most this many times the output cap.
WORK_FACTOR = 8

# Internal names. Filter names contain ':' so a template cannot spell them; the
# variable name is a valid identifier (the compiler turns it into a Python local).
_SELF_VAR = "_trustwire_self"
_ITER_FILTER = "trustwire:iter"
_EMIT_FILTER = "trustwire:emit"
_CONCAT_FILTER = "trustwire:concat"

_MAX_REASON_CHARS = 400
_REDACTED = "<redacted>"
# Values at least this long are treated as material: pieces of them are redacted too.
_LONG_VALUE_CHARS = 16
_WINDOW = 12
_SHORTEST_REDACTED_VALUE = 3


class TemplateError(Exception):
    """A template could not be rendered; ``str()`` says which template, where and why.

    The reason never contains values from the render context.
    """

    def __init__(self, template: str, line: int | None, reason: str) -> None:
        self.template = template
        self.line = line
        self.reason = reason
        where = f"template {template!r}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (TemplateError, (self.template, self.line, self.reason))


class _BoundExceeded(Exception):
    """Raised inside the sandbox when a bound is hit; becomes :class:`TemplateError`."""


# --------------------------------------------------------------------------------------
# Budget: the per-render bounds shared by every hook.
# --------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, max_bytes: int, time_budget: float, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.time_budget = time_budget
        self.clock = clock
        self.deadline = clock() + time_budget
        self.work_limit = WORK_FACTOR * max_bytes
        self.work = 0
        self.line: int | None = None  # the line of the latest loop step or output

    def tick(self) -> None:
        if self.clock() > self.deadline:
            raise _BoundExceeded(f"time budget of {self.time_budget:g}s exceeded")

    def too_big(self, what: str, size: int) -> NoReturn:
        raise _BoundExceeded(
            f"{what} would be {size} bytes or more, above the output size limit of {self.max_bytes} bytes"
        )

    def check_size(self, what: str, size: int) -> None:
        if size > self.max_bytes:
            self.too_big(what, size)

    def check_flat(self, what: str, value: Any) -> None:
        """Refuse turning ``value`` into text if its flattened size exceeds the output cap."""
        size = self.deep_size(value, self.max_bytes)
        if size > self.max_bytes:
            self.too_big(what, size)

    def check_result(self, what: str, value: Any) -> Any:
        """Backstop for results of calls, operators and filters; returns ``value``.

        Text is bounded by the output cap. Containers are bounded by the (larger) work
        limit, counting shared references each time: sorting or filtering a large
        context list is fine, a list of 100000 references to one big string is not.
        """
        if isinstance(value, str | bytes | bytearray):
            self.check_size(what, len(value))
            return value
        size = self.deep_size(value, self.work_limit)
        if size > self.work_limit:
            self.over_work_limit(what, size)
        return value

    def over_work_limit(self, what: str, size: int) -> NoReturn:
        raise _BoundExceeded(
            f"{what} would hold {size} items or characters or more, above the work limit of "
            f"{self.work_limit} ({WORK_FACTOR} x the output size limit of {self.max_bytes} bytes)"
        )

    def deep_size(self, value: Any, limit: int) -> int:
        """Approximate flattened size: string lengths plus one per container item.

        Shared references count each time they occur (that is what flattening them
        would cost). Stops as soon as the total passes ``limit``.
        """
        total = 0
        stack = [value]
        steps = 0
        while stack:
            item = stack.pop()
            steps += 1
            if steps % 4096 == 0:
                self.tick()
            if isinstance(item, str | bytes | bytearray):
                total += len(item)
            elif isinstance(item, bool) or item is None:
                total += 1
            elif isinstance(item, int):
                total += max(1, item.bit_length() // 8)
            elif isinstance(item, list | tuple | set | frozenset):
                total += 1
                stack.extend(item)
            elif isinstance(item, dict):
                total += 1
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                total += 1
            if total > limit:
                return total
        return total

    def materialize(self, what: str, value: Any) -> Any:
        """Turn a lazy iterable (generator, ``map``) into a list, bounded by the work limit."""
        if isinstance(value, Sized) or not isinstance(value, Iterable):
            return value
        items: list[Any] = []
        size = 0
        for item in value:
            self.tick()
            size += self.deep_size(item, self.work_limit) + 1
            if size > self.work_limit:
                self.over_work_limit(what, size)
            items.append(item)
        return items


# --------------------------------------------------------------------------------------
# Pre-checks for operations whose result can be far larger than their inputs.
# --------------------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_DIGITS = re.compile(r"\d+")
_NESTED_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")


def _ints_in(args: Iterable[Any]) -> Iterator[int]:
    for arg in args:
        if isinstance(arg, bool):
            continue
        if isinstance(arg, int):
            yield arg
        elif isinstance(arg, tuple | list):
            yield from (a for a in arg if isinstance(a, int) and not isinstance(a, bool))
        elif isinstance(arg, dict):
            yield from (a for a in arg.values() if isinstance(a, int) and not isinstance(a, bool))


def _check_int_args(budget: _Budget, what: str, args: Iterable[Any]) -> None:
    for number in _ints_in(args):
        if abs(number) > budget.max_bytes:
            budget.too_big(what, abs(number))


def _check_percent_format(budget: _Budget, fmt: str, args: Any) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group is None:
                continue
            if group == "*":
                _check_int_args(budget, "'%' formatting", [args])
            elif int(group) > budget.max_bytes:
                budget.too_big("'%' formatting", int(group))


def _check_brace_format(budget: _Budget, fmt: str, args: Iterable[Any]) -> None:
    for match in _FORMAT_FIELD.finditer(fmt):
        _, _, spec = match.group(0)[1:-1].partition(":")
        for digits in _DIGITS.findall(spec):
            if int(digits) > budget.max_bytes:
                budget.too_big("str.format", int(digits))
    # Nested fields ("{:{}}") take their width from an argument; only then are the
    # arguments widths (formatting 3600000 itself is fine).
    if _NESTED_FIELD.search(fmt):
        _check_int_args(budget, "str.format", args)


def _check_replace(budget: _Budget, what: str, text: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    budget.check_size(what, len(text) + hits * max(0, len(new) - len(old)))


def _check_join(budget: _Budget, what: str, sep: Any, items: list[Any]) -> None:
    sep_len = len(sep) if isinstance(sep, str) else 0
    total = sep_len * max(0, len(items) - 1)
    for item in items:
        total += budget.deep_size(item, budget.max_bytes)
        if total > budget.max_bytes:
            budget.too_big(what, total)


_STR_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_REFUSED_METHODS = frozenset({"translate"})  # a table can map each character to a large string


def _precheck_method(
    budget: _Budget, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Pre-check calls of amplifying ``str`` methods; returns possibly materialized args."""
    bound = getattr(func, "__wrapped__", func)  # the sandbox wraps str.format
    owner = getattr(bound, "__self__", None)
    name = getattr(bound, "__name__", "")
    if not isinstance(owner, str | bytes) or not isinstance(
        bound, types.BuiltinMethodType | types.MethodType
    ):
        return args
    what = f"{type(owner).__name__}.{name}"
    if name in _REFUSED_METHODS:
        raise SecurityError(f"{what} is not available in templates")
    if name in _STR_WIDTH_METHODS:
        _check_int_args(budget, what, args[:1] or list(kwargs.values()))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        if isinstance(tabsize, int):
            budget.check_size(what, len(owner) + max(0, tabsize) * tabs)
    elif name == "replace" and isinstance(owner, str):
        _check_replace(budget, what, owner, *(*args, None, None, -1)[:3])
    elif name == "join":
        if args:
            items = list(budget.materialize(what, args[0]))
            _check_join(budget, what, owner, items)
            return (items, *args[1:])
    elif name in ("format", "format_map") and isinstance(owner, str):
        _check_brace_format(budget, owner, list(args) + list(kwargs.values()))
    return args


# --------------------------------------------------------------------------------------
# Filters offered to templates.
# --------------------------------------------------------------------------------------


def _b64encode(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"b64encode expects text or bytes, not {type(value).__name__}")
    return base64.b64encode(bytes(value)).decode("ascii")


def _b64decode(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise TypeError(f"b64decode expects text, not {type(value).__name__}")
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("b64decode: input is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("b64decode: decoded data is not UTF-8 text") from None


def _tojson(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


_PROPERTIES_ESCAPES = {
    "\\": "\\\\",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\f": "\\f",
    "=": "\\=",
    ":": "\\:",
    "#": "\\#",
    "!": "\\!",
}


def _properties_escape(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"properties_escape expects text, not {type(value).__name__}")
    out: list[str] = []
    leading = True
    for char in value:
        if leading and char == " ":
            out.append("\\ ")
            continue
        leading = False
        escaped = _PROPERTIES_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif " " <= char <= "~":
            out.append(char)
        else:
            encoded = char.encode("utf-16-be")
            out.extend(
                f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04X}" for i in range(0, len(encoded), 2)
            )
    return "".join(out)


def _pem_oneline(value: Any, separator: str = "\\n") -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise TypeError(f"pem_oneline expects PEM text, not {type(value).__name__}")
    if not isinstance(separator, str):
        raise TypeError("pem_oneline separator must be text")
    return separator.join(line.strip() for line in value.strip().splitlines() if line.strip())


_OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "b64encode": _b64encode,
    "b64decode": _b64decode,
    "tojson": _tojson,
    "properties_escape": _properties_escape,
    "pem_oneline": _pem_oneline,
}


# Filters whose first argument after the value is a count of things to produce.
_WIDTH_FILTERS = frozenset({"center", "batch", "slice"})
# Filters that consume their whole input: a lazy input is materialized under the bound first.
_CONSUMING_FILTERS = frozenset(
    {"join", "list", "sum", "unique", "sort", "reverse", "batch", "slice", "string", "tojson", "pprint"}
)


def _precheck_filter(
    budget: _Budget, name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Refuse amplifying filter calls before they run; returns the (materialized) value."""
    what = f"filter {name!r}"
    if name in _CONSUMING_FILTERS:
        value = budget.materialize(what, value)
    if name in _WIDTH_FILTERS:
        _check_int_args(budget, what, list(rest[:1]) + list(kwargs.values()))
    if name == "join" and "attribute" not in kwargs and len(rest) < 2:
        # (with attribute=, the items are whole objects; the joined text is checked afterwards)
        sep = rest[0] if rest else kwargs.get("d", "")
        _check_join(budget, what, sep, list(value) if isinstance(value, list | tuple) else [])
    elif name == "replace" and isinstance(value, str):
        old, new, count = (*rest, None, None, None)[:3]
        _check_replace(
            budget, what, value, kwargs.get("old", old), kwargs.get("new", new), kwargs.get("count", count)
        )
    elif name == "indent" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 4)
        if isinstance(width, int) and not isinstance(width, bool):
            _check_int_args(budget, what, [width])
            width = " " * width
        if isinstance(width, str):
            budget.check_size(what, len(value) + len(width) * (value.count("\n") + 1))
    elif name == "wordwrap" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 79)
        wrap = rest[2] if len(rest) > 2 else kwargs.get("wrapstring", "\n")
        if isinstance(width, int) and isinstance(wrap, str):
            budget.check_size(what, len(value) + (len(value) // max(1, width) + 1) * len(wrap))
    elif name == "format" and isinstance(value, str):
        _check_percent_format(budget, value, rest or tuple(kwargs.values()))
    return value


def _guard_filter(budget: _Budget, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: clock check, amplifier pre-checks, bounded result.

    ``functools.wraps`` copies ``jinja_pass_arg``, so filters that receive the context,
    eval context or environment keep receiving it as their first argument; the value
    comes right after it.
    """
    skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # set by pass_context & co.
    what = f"filter {name!r}"

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        if len(args) > skip:
            value = _precheck_filter(budget, name, args[skip], args[skip + 1 :], kwargs)
            args = (*args[:skip], value, *args[skip + 1 :])
        return budget.check_result(what, func(*args, **kwargs))

    return guarded


# --------------------------------------------------------------------------------------
# The environment.
# --------------------------------------------------------------------------------------


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox whose hooks enforce one render's :class:`_Budget`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, budget: _Budget) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            loader=None,
        )
        self.budget = budget
        self.globals.pop("lipsum", None)
        self.filters.update(_OWN_FILTERS)
        self.filters = {name: _guard_filter(budget, name, func) for name, func in self.filters.items()}
        self.filters[_ITER_FILTER] = _iter_filter(budget)
        self.filters[_EMIT_FILTER] = _emit_filter(budget)
        self.filters[_CONCAT_FILTER] = _concat_filter(budget)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = __self.budget
        budget.tick()
        args = _precheck_method(budget, __obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return budget.check_result("call result", result)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget
        budget.tick()
        what = f"'{operator}'"
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(times, bool):
                if isinstance(seq, str | bytes | list | tuple):
                    unit = budget.deep_size(seq, budget.max_bytes)
                    budget.check_size(what, unit * max(0, times))
                elif isinstance(seq, int) and not isinstance(seq, bool):
                    budget.check_size(what, (seq.bit_length() + times.bit_length()) // 8)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                budget.check_size(what, int(right * math.log2(abs(left)) // 8))
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and type(left) is type(right):
                budget.check_size(
                    what,
                    budget.deep_size(left, budget.max_bytes) + budget.deep_size(right, budget.max_bytes),
                )
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(budget, left, right)
        result = super().call_binop(context, operator, left, right)
        return budget.check_result(what, result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.tick()
        return super().getitem(obj, argument)


# The internal filters below are inserted by _Rewrite. They receive the context only so
# that Jinja never constant-folds them at compile time.


def _iter_filter(budget: _Budget) -> Callable[..., Any]:
    @pass_context
    def iterate(_context: Context, iterable: Any, line: int) -> Iterator[Any]:
        budget.line = line
        budget.tick()
        for item in iterable:
            budget.tick()
            yield item

    return iterate


def _emit_filter(budget: _Budget) -> Callable[..., Any]:
    @pass_context
    def emit(_context: Context, value: Any, line: int) -> str:
        budget.line = line
        budget.tick()
        text = value if isinstance(value, str) else None
        if text is None:
            budget.check_flat("output expression", value)
            text = str(value)
        budget.work += len(text)
        if budget.work > budget.work_limit:
            raise _BoundExceeded(
                f"templates emitted more than {budget.work_limit} characters in total, counting text "
                f"captured by macros and blocks (work limit: {WORK_FACTOR} x the output size limit of "
                f"{budget.max_bytes} bytes)"
            )
        return text

    return emit


def _concat_filter(budget: _Budget) -> Callable[..., Any]:
    @pass_context
    def concat(_context: Context, values: list[Any]) -> str:
        budget.tick()
        _check_join(budget, "'~'", "", values)
        return "".join(str(v) for v in values)

    return concat


class _Rewrite(NodeTransformer):
    """Route ``self``, loops, outputs and ``~`` through the sandbox's bookkeeping."""

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.name == "self":
            node.name = _SELF_VAR
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _internal_filter(node.iter, _ITER_FILTER, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(
            nodes.List(node.nodes, lineno=node.lineno), _CONCAT_FILTER, [], [], None, None, lineno=node.lineno
        )

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            _internal_filter(
                nodes.Const(child.data, lineno=child.lineno)
                if isinstance(child, nodes.TemplateData)
                else child,
                _EMIT_FILTER,
                child.lineno,
            )
            for child in node.nodes
        ]
        return node


def _internal_filter(node: nodes.Node, name: str, line: int) -> nodes.Filter:
    return nodes.Filter(node, name, [nodes.Const(line, lineno=line)], [], None, None, lineno=line)


# --------------------------------------------------------------------------------------
# Error reporting.
# --------------------------------------------------------------------------------------


def _strings_in(value: Any, out: set[str], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(value, str):
        if len(value) >= _SHORTEST_REDACTED_VALUE:
            out.add(value)
    elif isinstance(value, bytes | bytearray):
        _strings_in(bytes(value).decode("utf-8", errors="replace"), out, depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings_in(item, out, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _strings_in(item, out, depth + 1)


_QUOTED = re.compile(r"'([^']{8,})'|\"([^\"]{8,})\"")


def _redact(message: str, context: Mapping[str, Any]) -> str:
    """Hide every context value (raw, ``repr``- or JSON-escaped) and every piece of a long one.

    Marks, on the message: each occurrence of a value of at least three characters
    (short values only as whole tokens, so a value ``sig`` does not eat "signature");
    each run of :data:`_WINDOW` characters found inside a long value (catches slices of
    a key); each quoted fragment of eight or more characters found inside a long value.
    Marked runs become ``<redacted>``. Errors are rare, so plain substring search is fine.
    """
    message = message.replace(_SELF_VAR, "self")
    if len(message) > _MAX_REASON_CHARS:
        message = message[: _MAX_REASON_CHARS - 3] + "..."
    values: set[str] = set()
    _strings_in(context, values)
    forms = {form for value in values for form in (value, repr(value)[1:-1], json.dumps(value)[1:-1])}
    haystack = "\0".join(form for form in forms if len(form) >= _LONG_VALUE_CHARS)
    hidden = [False] * len(message)

    def mark(start: int, stop: int) -> None:
        hidden[start:stop] = [True] * (stop - start)

    for form in forms:
        if len(form) >= _LONG_VALUE_CHARS:
            pattern = re.escape(form)
        elif len(form) >= _SHORTEST_REDACTED_VALUE:
            pattern = rf"(?<![\w.-]){re.escape(form)}(?![\w.-])"
        else:
            continue
        for found in re.finditer(pattern, message):
            mark(found.start(), found.end())
    for start in range(len(message) - _WINDOW + 1):
        if message[start : start + _WINDOW] in haystack:
            mark(start, start + _WINDOW)
    for found in _QUOTED.finditer(message):
        group = 1 if found.group(1) is not None else 2
        if found.group(group) in haystack:
            mark(found.start(group), found.end(group))
    out: list[str] = []
    for i, char in enumerate(message):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(_REDACTED)
    return "".join(out)


def _line_from_traceback(exc: BaseException, filename: str) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _BoundExceeded):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "recursion too deep (Python recursion limit)"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OverflowError) and "MAX_RANGE" in str(exc):
        return f"range too big: {exc} (range limit)"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------


def render_template(
    name: str,
    source: str,
    context: Mapping[str, Any],
    *,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    time_budget: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Render ``source`` (named ``name`` in errors) with ``context`` inside the sandbox.

    Raises :class:`TemplateError` for every failure; see the module docstring for the
    context contract, the filters and the bounds.
    """
    source_bytes = len(source.encode("utf-8"))
    if source_bytes > MAX_SOURCE_BYTES:
        raise TemplateError(
            name,
            None,
            f"source is {source_bytes} bytes, above the source size limit of {MAX_SOURCE_BYTES} bytes",
        )
    budget = _Budget(max_output_bytes, time_budget, clock)
    # A filename no real Python module can have: it identifies this template's frames.
    filename = f"<trustwire template {name!r}>"
    variables = dict(context)
    identity = context.get("self", context.get("identity"))
    if identity is not None:
        variables[_SELF_VAR] = identity
        variables.setdefault("identity", identity)
    chunks: list[str] = []
    try:
        env = _Sandbox(budget)
        tree = _Rewrite().visit(env.parse(source, name, filename))
        tree.set_environment(env)
        code = env.compile(tree, name, filename)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        size = 0
        # Template.generate is a generator function; closing it stops the template at once.
        stream = cast(Generator[str, None, None], template.generate(variables))
        try:
            for chunk in stream:
                size += len(chunk.encode("utf-8"))
                if size > max_output_bytes:
                    raise TemplateError(
                        name, budget.line, f"output exceeds the output size limit of {max_output_bytes} bytes"
                    )
                budget.tick()
                chunks.append(chunk)
        finally:
            stream.close()
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(name, exc.lineno, _redact(_reason(exc), context)) from None
    except Exception as exc:  # includes RecursionError and MemoryError
        line = _line_from_traceback(exc, filename)
        raise TemplateError(name, line, _redact(_reason(exc), context)) from None
    return "".join(chunks)
