"""trustwire.plan.templates: outcomes per template, and the budget measured by the injected timer."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from trustwire.model import ServiceIdentity, parse_identity
from trustwire.plan import templates
from trustwire.plan.material import StoredObject


def _ident(*names: str) -> ServiceIdentity:
    return parse_identity({
        "apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
        "metadata": {"name": "dgc", "namespace": "gov"},
        "spec": {"templates": [{"name": n, "inline": f"{n}={{{{ self.name }}}}"} for n in names]},
    })


def _steps(seconds: float) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: next(ticks) * seconds


def test_rendered_kept_and_absent() -> None:
    ident = _ident("a.conf", "b.conf", "c.conf")
    ctx = templates.context(ident, None, None, [], {})
    stored = StoredObject("dgc-trustwire-trust", True, "dgc", {"b.conf": b"old b"})
    sources = {"a.conf": "a={{ self.name }}", "b.conf": None, "c.conf": None}
    data, check = templates.render_all(ident, sources, ctx, stored, _steps(0.0))
    assert data == {"a.conf": b"a=dgc", "b.conf": b"old b"}  # c.conf never rendered: absent
    assert (check.ok, check.reason) == (False, "TemplateSourceMissing") and "'b.conf'" in check.message


def test_the_budget_is_shared_and_measured_by_the_injected_timer() -> None:
    ident = _ident("a.conf", "b.conf")
    ctx = templates.context(ident, None, None, [], {})
    sources = {t.name: t.inline for t in ident.templates}
    data, check = templates.render_all(ident, sources, ctx, None, _steps(0.0))
    assert check.ok and set(data) == {"a.conf", "b.conf"}
    # every reading of the timer is 3 s later: the second template finds the 4 s budget used up
    data, check = templates.render_all(ident, sources, ctx, None, _steps(3.0))
    assert set(data) == {"a.conf"} and (check.reason, check.stalled) == ("TemplateError", True)
    assert "rendering budget for all its templates is used up" in check.message
