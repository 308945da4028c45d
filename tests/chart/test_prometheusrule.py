"""The chart's PrometheusRule carries the alerts of docs/metrics.md, and what they group and
select by is what the ServiceMonitor's scrape delivers.

No PromQL engine is at hand, so the expressions are read with a small parser of the two things
that decide their label sets: metric selectors (`name{label="..."}`) and `by (...)` clauses.
`promtool check rules` runs too where promtool is on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .render import NAMESPACE, REPO_ROOT, of_kind, one, render_objects

METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"
ENABLED = {"metrics": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}}
#: What the Prometheus Operator's scrape config adds to every series of a ServiceMonitor target.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "service", "pod", "container", "endpoint"})


def _documented_rules() -> list[dict[str, Any]]:
    """The rules of the PrometheusRule example under "## Alerts" in docs/metrics.md."""
    section = METRICS_DOC.read_text().split("\n## Alerts", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (group,) = yaml.safe_load(block)["spec"]["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def _documented_labels() -> dict[str, frozenset[str]]:
    """Metric name -> its labels, from the tables of docs/metrics.md ("as above" repeats a row)."""
    labels: dict[str, frozenset[str]] = {}
    previous: frozenset[str] = frozenset()
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`trustwire_"):
            continue
        names = re.findall(r"`(trustwire_\w+)`", cells[0])
        if cells[2] == "as above":
            found = previous
        else:
            found = frozenset(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        for name in names:
            labels[name] = found
        previous = found
    return labels


def _rendered_rules(values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rule = one(render_objects(values), "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "trustwire"
    return rule, group["rules"]


SELECTOR = re.compile(r"\b(trustwire_\w+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"[^\"]*\"")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    return [(m[1], set(MATCHER.findall(m[2] or ""))) for m in SELECTOR.finditer(expr)]


def _by(expr: str) -> set[str]:
    return {label.strip() for clause in BY.findall(expr) for label in clause.split(",") if label.strip()}


def scraped(metric_labels: frozenset[str], honor_labels: bool) -> dict[str, str]:
    """Label -> where its value comes from, after a scrape: "metric" or "target".

    With honor_labels the exposed label wins a clash; without, Prometheus keeps the target's
    value and renames the exposed one `exported_<name>`.
    """
    out = {label: "target" for label in TARGET_LABELS}
    for label in metric_labels:
        if label in TARGET_LABELS and not honor_labels:
            out[f"exported_{label}"] = "metric"
        else:
            out[label] = "metric"
    return out


def label_problems(rule: dict[str, Any], documented: dict[str, frozenset[str]], honor_labels: bool) -> list[str]:
    """Every label an alert groups, selects or templates by that the scrape does not carry with
    the operator's meaning; [] when they all match."""
    expr = str(rule["expr"])
    grouped = _by(expr)
    problems = []
    selectors = _selectors(expr)
    if not selectors:
        problems.append("selects no trustwire metric")
    for name, matched in selectors:
        if name not in documented:
            problems.append(f"{name} is not a documented metric")
            continue
        labels = scraped(documented[name], honor_labels)
        for label in sorted(grouped | matched):
            if labels.get(label) != "metric":
                problems.append(f"{name} has no {label} label of its own after the scrape")
    templated = set(TEMPLATE_LABEL.findall(yaml.safe_dump(rule.get("annotations") or {})))
    problems += [f"annotations use {label}, which the expr drops" for label in sorted(templated - grouped)]
    return [f"{rule['alert']}: {p}" for p in problems]


def test_chart_rules_are_the_documented_alerts() -> None:
    _, rules = _rendered_rules(ENABLED)
    documented = _documented_rules()
    assert [r["alert"] for r in rules] == [r["alert"] for r in documented]
    assert rules == documented


def test_prometheusrule_is_off_by_default() -> None:
    assert not of_kind(render_objects({}), "PrometheusRule")


def test_labels_and_extra_rules_follow_the_values() -> None:
    extra = [{"alert": "TrustwireDown", "expr": 'up{job="trustwire-metrics"} == 0', "for": "5m"}]
    values = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}, "extraRules": extra}}}
    rule, rules = _rendered_rules(values)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rules[-1] == extra[0]
    assert rules[:-1] == _documented_rules()


def test_documented_label_tables_are_read() -> None:
    documented = _documented_labels()
    assert documented["trustwire_certificate_ready_status"] == {"namespace", "name", "condition"}
    assert documented["trustwire_rotation_phase_start_timestamp_seconds"] == {
        "namespace", "identity", "material", "phase"}
    assert documented["trustwire_reconcile_total"] == {"kind", "result"}
    assert documented["trustwire_queue_depth"] == frozenset()


def test_parser_reads_selectors_and_groupings() -> None:
    expr = 'time() - max by (namespace, identity, phase)\n  (trustwire_x_seconds{phase!="Idle", a=~"b"}) > 1'
    assert _selectors(expr) == [("trustwire_x_seconds", {"phase", "a"})]
    assert _by(expr) == {"namespace", "identity", "phase"}
    assert _by("sum by(code) (rate(trustwire_api_errors_total[5m]))") == {"code"}


def test_alert_label_sets_match_what_the_servicemonitor_scrape_produces() -> None:
    (endpoint,) = one(render_objects(ENABLED), "ServiceMonitor")["spec"]["endpoints"]
    honor = bool(endpoint.get("honorLabels", False))
    assert honor, "the ServiceMonitor keeps the operator's namespace label"
    documented = _documented_labels()
    _, rules = _rendered_rules(ENABLED)
    problems = [p for rule in rules for p in label_problems(rule, documented, honor)]
    assert problems == []


def test_without_honor_labels_the_namespace_alerts_would_break() -> None:
    """The check above is not vacuous: Prometheus's default renames our namespace label."""
    documented = _documented_labels()
    _, rules = _rendered_rules(ENABLED)
    broken = {p.split(":", 1)[0] for rule in rules for p in label_problems(rule, documented, honor_labels=False)}
    grouped_by_namespace = {r["alert"] for r in rules if "namespace" in _by(str(r["expr"]))}
    assert grouped_by_namespace and broken == grouped_by_namespace


def _promtool() -> str | None:
    """``$PROMTOOL`` (``.ci/run`` builds it with tests/cluster/promtool.sh), else PATH."""
    named = os.environ.get("PROMTOOL")
    return named if named and Path(named).is_file() else shutil.which("promtool")


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool is neither $PROMTOOL nor on PATH: `bash tests/cluster/promtool.sh` builds it "
                    "from the Go module proxy (.ci/run does); the parser tests above check the label sets")
    rule, _ = _rendered_rules(ENABLED)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
