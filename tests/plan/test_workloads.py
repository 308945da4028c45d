"""Workload wiring: RFC 6902 ops applied with the ``jsonpatch`` library to real-looking bodies.

Each test applies the planned ops exactly as the API server would (``jsonpatch`` follows
RFC 6902, including ``test`` ops that abort the whole patch) and then inspects the
resulting object — never the op list alone — except where the op list *is* the
contract (zero ops on resync, one replace on a hash change, tests before indexed ops).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest

from trustwire import names
from trustwire.plan import wiring_containers
from trustwire.plan.wiring_json import pointer
from trustwire.plan.workloads import DEFAULT_MODE, Wiring, material_hash, wiring_ops

MOUNT = "/var/run/trustwire"
HASH_1 = material_hash({"tls.crt": b"one"})
HASH_2 = material_hash({"tls.crt": b"two"})


# --------------------------------------------------------------------------------------
# Real-looking workloads
# --------------------------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    """Two containers, an init container, existing volumes/mounts/env/annotations."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "dgc",
            "namespace": "governance",
            "labels": {"app.kubernetes.io/name": "dgc"},
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "argocd.argoproj.io/tracking-id": "dgc:apps",
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "dgc"}},
            "template": {
                "metadata": {"labels": {"app": "dgc"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "serviceAccountName": "dgc",
                    "initContainers": [
                        {
                            "name": "migrate",
                            "image": "registry.example/dgc-migrate:1.4.2",
                            "env": [{"name": "DB_URL", "value": "jdbc:postgresql://db/dgc"}],
                        }
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/dgc:1.4.2",
                            "ports": [{"containerPort": 8443, "name": "https"}],
                            "env": [
                                {"name": "JAVA_OPTS", "value": "-Xmx1g"},
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            ],
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/dgc", "readOnly": True}],
                        },
                        {
                            "name": "envoy",
                            "image": "envoyproxy/envoy:v1.31.0",
                            "args": ["-c", "/etc/envoy/envoy.yaml"],
                            "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy"}],
                        },
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "dgc-config"}},
                        {"name": "envoy-config", "configMap": {"name": "dgc-envoy"}},
                    ],
                },
            },
        },
    }


def statefulset() -> dict[str, Any]:
    """No annotations anywhere, no volumes, no env: every parent must be created."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "jobserver", "namespace": "jobs"},
        "spec": {
            "serviceName": "jobserver",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "jobserver"}},
            "template": {
                "metadata": {"labels": {"app": "jobserver"}},
                "spec": {
                    "containers": [
                        {"name": "server", "image": "registry.example/jobserver:7.0"},
                        {"name": "metrics", "image": "registry.example/exporter:2.1", "env": []},
                    ]
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}},
            ],
        },
    }


def daemonset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "infra", "annotations": {"team": "platform"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [
                        {
                            "name": "agent",
                            "image": "registry.example/agent:3",
                            "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                        }
                    ],
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
                },
            },
        },
    }


WORKLOADS: dict[str, Callable[[], dict[str, Any]]] = {
    "Deployment": deployment,
    "StatefulSet": statefulset,
    "DaemonSet": daemonset,
}


def wiring_for(
    body: dict[str, Any],
    containers: tuple[str, ...] = (),
    *,
    identity: str = "dgc",
    mount_path: str = MOUNT,
    digest: str | None = HASH_1,
) -> Wiring:
    return Wiring(
        identity=identity,
        namespace=body["metadata"]["namespace"],
        mount_path=mount_path,
        credentials_secret=f"{identity}-trustwire-credentials",
        trust_secrets=(f"{identity}-trustwire-trust",),
        containers=containers,
        material_hash=digest,
    )


def apply(body: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(body, ops)  # deep-copies body
    return result


def wire(body: dict[str, Any], wiring: Wiring) -> dict[str, Any]:
    result = wiring_ops(body, wiring)
    assert result.problems == []
    return apply(body, result.ops)


# --------------------------------------------------------------------------------------
# Assertions about objects and op lists
# --------------------------------------------------------------------------------------


def containers_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = body["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("containers", []) + spec.get("initContainers", [])}


def assert_wired(body: dict[str, Any], wiring: Wiring, selected: set[str]) -> None:
    spec = body["spec"]["template"]["spec"]
    ours = [v for v in spec["volumes"] if v["name"] == "trustwire"]
    assert ours == [
        {
            "name": "trustwire",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"secret": {"name": wiring.credentials_secret}},
                    {"secret": {"name": wiring.trust_secrets[0]}},
                ],
            },
        }
    ]
    for name, container in containers_of(body).items():
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] == "trustwire"]
        env = [e for e in container.get("env", []) if e["name"] == "TRUSTWIRE_DIR"]
        if name in selected:
            assert mounts == [{"name": "trustwire", "mountPath": wiring.mount_path, "readOnly": True}], name
            assert env == [{"name": "TRUSTWIRE_DIR", "value": wiring.mount_path}], name
        else:
            assert mounts == [] and env == [], name
    assert (
        body["spec"]["template"]["metadata"]["annotations"]["trustwire.io/material-hash"]
        == wiring.material_hash
    )
    assert body["metadata"]["annotations"]["trustwire.io/wired-by"] == wiring.owner


_LIST_FIELDS = {"containers", "initContainers", "volumes", "volumeMounts", "env"}


def assert_indexed_ops_pinned(ops: list[dict[str, Any]]) -> None:
    """Every op addressing a list element by index is preceded by a test of that element's name,
    with no remove in the same list in between (a remove would shift the index)."""
    for position, op in enumerate(ops):
        if op["op"] == "test":
            continue
        parts = op["path"].split("/")[1:]
        for i, part in enumerate(parts):
            if not part.isdigit() or parts[i - 1] not in _LIST_FIELDS:
                continue
            element = "/" + "/".join(parts[: i + 1])
            list_path = "/" + "/".join(parts[:i])
            pinned = False
            for earlier in ops[:position]:
                if earlier["op"] == "test" and earlier["path"] == element + "/name":
                    pinned = True
                elif earlier["op"] == "remove" and earlier["path"].startswith(list_path + "/"):
                    pinned = False
            assert pinned, f"op {op} addresses {element} without a preceding test of its name"


def without_ours(body: dict[str, Any]) -> dict[str, Any]:
    """The object with everything trustwire adds taken out (for "nothing else changed" checks)."""
    out = copy.deepcopy(body)
    spec = out["spec"]["template"]["spec"]
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] != "trustwire"]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        if "volumeMounts" in container:
            container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "trustwire"]
        if "env" in container:
            container["env"] = [e for e in container["env"] if e["name"] != "TRUSTWIRE_DIR"]
    out["spec"]["template"]["metadata"].get("annotations", {}).pop("trustwire.io/material-hash", None)
    out["metadata"].get("annotations", {}).pop("trustwire.io/wired-by", None)
    result: dict[str, Any] = normalize_empty(out)
    return result


def normalize_empty(value: Any) -> Any:
    """Drop empty lists/maps (a real API server does not store them either)."""
    if isinstance(value, dict):
        return {k: normalize_empty(v) for k, v in value.items() if v not in ([], {})}
    if isinstance(value, list):
        return [normalize_empty(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------------------

SELECTIONS = [
    # kind, containers in the spec, expected wired containers
    ("Deployment", (), {"app", "envoy"}),
    ("Deployment", ("envoy",), {"envoy"}),
    ("Deployment", ("migrate",), {"migrate"}),
    ("Deployment", ("app", "migrate"), {"app", "migrate"}),
    ("StatefulSet", (), {"server", "metrics"}),
    ("StatefulSet", ("metrics",), {"metrics"}),
    ("DaemonSet", (), {"agent"}),
]


@pytest.mark.parametrize(("kind", "selection", "expected"), SELECTIONS)
def test_fresh_wire_mounts_exactly_the_selected_containers(
    kind: str, selection: tuple[str, ...], expected: set[str]
) -> None:
    original = WORKLOADS[kind]()
    wiring = wiring_for(original, selection)
    result = wiring_ops(original, wiring)

    assert result.problems == []
    assert_indexed_ops_pinned(result.ops)
    assert {op["op"] for op in result.ops} <= {"test", "add"}  # a fresh wire only adds
    wired = apply(original, result.ops)
    assert_wired(wired, wiring, expected)
    assert without_ours(wired) == normalize_empty(original)  # nothing else changed
    assert original == WORKLOADS[kind]()  # the observed object was not mutated


def test_init_containers_are_wired_only_when_named() -> None:
    wired = wire(deployment(), wiring_for(deployment()))
    migrate = containers_of(wired)["migrate"]
    assert "volumeMounts" not in migrate
    assert migrate["env"] == [{"name": "DB_URL", "value": "jdbc:postgresql://db/dgc"}]


def test_missing_parents_are_created_whole() -> None:
    body = statefulset()
    ops = wiring_ops(body, wiring_for(body, ("server",))).ops
    adds = {op["path"]: op["value"] for op in ops if op["op"] == "add"}
    assert adds["/spec/template/spec/volumes"][0]["name"] == "trustwire"
    assert adds["/spec/template/spec/containers/0/volumeMounts"] == [
        {"name": "trustwire", "mountPath": MOUNT, "readOnly": True}
    ]
    assert adds["/spec/template/spec/containers/0/env"] == [{"name": "TRUSTWIRE_DIR", "value": MOUNT}]
    assert adds["/spec/template/metadata/annotations"] == {"trustwire.io/material-hash": HASH_1}
    assert adds["/metadata/annotations"] == {"trustwire.io/wired-by": "jobs/dgc"}


def test_existing_lists_are_appended_to_with_dash() -> None:
    body = deployment()
    ops = wiring_ops(body, wiring_for(body, ("app",))).ops
    adds = [op["path"] for op in ops if op["op"] == "add"]
    assert adds == [
        "/spec/template/spec/volumes/-",
        "/spec/template/spec/containers/0/volumeMounts/-",
        "/spec/template/spec/containers/0/env/-",
        "/spec/template/metadata/annotations/trustwire.io~1material-hash",
        "/metadata/annotations/trustwire.io~1wired-by",
    ]
    projected = next(op for op in ops if op["path"] == "/spec/template/spec/volumes/-")["value"]["projected"]
    assert projected["defaultMode"] == DEFAULT_MODE == 288


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
@pytest.mark.parametrize("selection", [(), "first"])
def test_resync_of_a_wired_workload_makes_no_ops(kind: str, selection: tuple[str, ...] | str) -> None:
    body = WORKLOADS[kind]()
    if selection == "first":
        selection = (body["spec"]["template"]["spec"]["containers"][0]["name"],)
    wiring = wiring_for(body, tuple(selection))
    wired = wire(body, wiring)
    assert wiring_ops(wired, wiring).ops == []
    assert wiring_ops(copy.deepcopy(wired), wiring).problems == []


def test_hash_change_is_exactly_one_replace_guarded_by_a_test() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    ops = wiring_ops(wired, wiring_for(body, digest=HASH_2)).ops
    path = "/spec/template/metadata/annotations/trustwire.io~1material-hash"
    assert ops == [
        {"op": "test", "path": path, "value": HASH_1},
        {"op": "replace", "path": path, "value": HASH_2},
    ]
    rolled = apply(wired, ops)
    assert_wired(rolled, wiring_for(body, digest=HASH_2), {"app", "envoy"})


def test_in_place_workloads_get_everything_but_the_hash_that_would_roll_them() -> None:
    """``rollout: InPlace``: mounted like any other, but the pod template carries no material
    hash, so a change of material changes nothing in the workload; switching a wired
    workload to InPlace removes the hash (one last rollout), and back adds it."""
    body = deployment()
    in_place = wire(body, wiring_for(body, digest=None))
    annotations = in_place["spec"]["template"].get("metadata", {}).get("annotations") or {}
    assert names.MATERIAL_HASH_ANNOTATION not in annotations
    assert in_place["spec"]["template"]["spec"]["volumes"][-1]["name"] == names.VOLUME_NAME
    assert wiring_ops(in_place, wiring_for(body, digest=None)).ops == []
    restarted = wire(body, wiring_for(body))
    switched = wire(restarted, wiring_for(body, digest=None))
    assert names.MATERIAL_HASH_ANNOTATION not in (switched["spec"]["template"]["metadata"].get("annotations") or {})
    assert wire(switched, wiring_for(body)) == restarted


def test_mount_path_change_replaces_mount_and_env_of_each_container() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    moved = wiring_for(body, mount_path="/etc/trustwire")
    result = wiring_ops(wired, moved)
    assert result.problems == []
    assert_indexed_ops_pinned(result.ops)
    assert [op["op"] for op in result.ops if op["op"] != "test"] == [
        "replace"
    ] * 4  # 2 containers x (mount, env)
    assert_wired(apply(wired, result.ops), moved, {"app", "envoy"})


def test_narrowing_the_selection_unwires_the_dropped_containers() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    narrowed = wiring_for(body, ("app",))
    result = wiring_ops(wired, narrowed)
    assert result.problems == []
    assert_indexed_ops_pinned(result.ops)
    after = apply(wired, result.ops)
    assert_wired(after, narrowed, {"app"})
    assert containers_of(after)["envoy"] == containers_of(body)["envoy"]


def test_volume_with_equivalent_explicit_fields_is_up_to_date() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    volume = next(v for v in wired["spec"]["template"]["spec"]["volumes"] if v["name"] == "trustwire")
    for source in volume["projected"]["sources"]:
        source["secret"]["optional"] = False
    assert wiring_ops(wired, wiring_for(body)).ops == []


def test_drifted_volume_of_ours_is_replaced_in_place() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    volume = next(v for v in wired["spec"]["template"]["spec"]["volumes"] if v["name"] == "trustwire")
    volume["projected"]["defaultMode"] = 0o644
    ops = wiring_ops(wired, wiring_for(body)).ops
    assert ops == [
        {"op": "test", "path": "/spec/template/spec/volumes/2/name", "value": "trustwire"},
        {"op": "replace", "path": "/spec/template/spec/volumes/2", "value": ops[1]["value"]},
    ]
    assert apply(wired, ops)["spec"]["template"]["spec"]["volumes"][2]["projected"]["defaultMode"] == 0o440


SPLITS = [
    ("the trust files split", ("dgc-trustwire-trust",), ("dgc-trustwire-trust", "dgc-trustwire-trust-peers.json")),
    ("another file split too", ("dgc-trustwire-trust", "dgc-trustwire-trust-peers.json"),
     ("dgc-trustwire-trust", "dgc-trustwire-trust-trust-bundle.pem", "dgc-trustwire-trust-peers.json")),
    ("back in one Secret", ("dgc-trustwire-trust", "dgc-trustwire-trust-truststore.p12"), ("dgc-trustwire-trust",)),
]


@pytest.mark.parametrize(("why", "before", "after"), SPLITS, ids=[c[0] for c in SPLITS])
def test_the_volume_projects_every_trust_secret_as_the_split_changes(
    why: str, before: tuple[str, ...], after: tuple[str, ...]
) -> None:
    body = deployment()
    first = dataclasses.replace(wiring_for(body), trust_secrets=before)
    wired = wire(body, first)
    then = dataclasses.replace(first, trust_secrets=after)
    result = wiring_ops(wired, then)
    assert result.problems == []  # still our volume: its Secrets are all this identity's
    rewired = apply(wired, result.ops)
    volume = next(v for v in rewired["spec"]["template"]["spec"]["volumes"] if v["name"] == "trustwire")
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == ["dgc-trustwire-credentials", *after]
    assert wiring_ops(rewired, then).ops == []  # and a resync leaves it alone
    unwired = apply(rewired, wiring_ops(rewired, None).ops)
    assert all(v["name"] != "trustwire" for v in unwired["spec"]["template"]["spec"]["volumes"])


def test_a_volume_projecting_another_identitys_trust_secret_is_not_ours() -> None:
    body = deployment()
    wired = wire(body, dataclasses.replace(wiring_for(body), trust_secrets=("dgc-trustwire-trust",)))
    volume = next(v for v in wired["spec"]["template"]["spec"]["volumes"] if v["name"] == "trustwire")
    volume["projected"]["sources"].append({"secret": {"name": "other-trustwire-trust-peers.json"}})
    result = wiring_ops(wired, wiring_for(body))
    assert result.ops == [] or all(not op["path"].startswith("/spec/template/spec/volumes") for op in result.ops)
    assert len(result.problems) == 1 and "not trustwire's projected volume" in result.problems[0]


# --------------------------------------------------------------------------------------
# Unwiring
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "selection", "expected"), SELECTIONS)
def test_wire_then_unwire_restores_the_original(
    kind: str, selection: tuple[str, ...], expected: set[str]
) -> None:
    original = WORKLOADS[kind]()
    wired = wire(original, wiring_for(original, selection))
    result = wiring_ops(wired, None)
    assert result.problems == []
    assert_indexed_ops_pinned(result.ops)
    assert {op["op"] for op in result.ops} <= {"test", "remove"}
    assert normalize_empty(apply(wired, result.ops)) == normalize_empty(original)
    if kind != "StatefulSet":  # the StatefulSet has an explicit `env: []`, which a real server drops
        assert apply(wired, result.ops) == original


def test_unwire_keeps_a_gitops_writers_changes() -> None:
    original = deployment()
    wired = wire(original, wiring_for(original))

    def writer(body: dict[str, Any]) -> dict[str, Any]:
        # Another field manager (Argo CD, kubectl) edits the same object meanwhile.
        return apply(
            body,
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "registry.example/dgc:1.5.0",
                },
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "add", "path": "/metadata/annotations/argocd.argoproj.io~1sync-wave", "value": "2"},
                {
                    "op": "add",
                    "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
                    "value": "2024-05-01T10:00:00Z",
                },
            ],
        )

    unwired = apply(writer(wired), wiring_ops(writer(wired), None).ops)
    assert unwired == writer(original)


def test_unwire_of_a_workload_never_wired_makes_no_ops() -> None:
    for make in WORKLOADS.values():
        assert wiring_ops(make(), None) == wiring_ops(make(), None)
        assert wiring_ops(make(), None).ops == []


def test_unwire_leaves_a_users_trustwire_dir_alone() -> None:
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][1]["env"] = [
        {"name": "TRUSTWIRE_DIR", "value": "/srv/certs"}
    ]
    wired = wire(body, wiring_for(body, ("app",)))
    unwired = apply(wired, wiring_ops(wired, None).ops)
    assert unwired == body


def test_unwire_with_a_foreign_volume_removes_only_our_annotations() -> None:
    body = deployment()
    wired = wire(body, wiring_for(body))
    # Someone replaced our volume with their own; mounts named trustwire now refer to theirs.
    volumes = wired["spec"]["template"]["spec"]["volumes"]
    volumes[2] = {"name": "trustwire", "emptyDir": {}}
    result = wiring_ops(wired, None)
    assert len(result.problems) == 1 and "volume 'trustwire'" in result.problems[0]
    after = apply(wired, result.ops)
    assert after["spec"]["template"]["spec"]["volumes"][2] == {"name": "trustwire", "emptyDir": {}}
    assert "trustwire.io/wired-by" not in after["metadata"]["annotations"]
    assert "trustwire.io/material-hash" not in after["spec"]["template"]["metadata"]["annotations"]
    assert containers_of(after)["app"]["env"][-1]["name"] == "TRUSTWIRE_DIR"


# --------------------------------------------------------------------------------------
# Concurrency: a reordered list makes the patch fail instead of hitting the wrong element
# --------------------------------------------------------------------------------------


def swap_containers(body: dict[str, Any]) -> None:
    containers = body["spec"]["template"]["spec"]["containers"]
    containers[0], containers[1] = containers[1], containers[0]


def prepend_volume(body: dict[str, Any]) -> None:
    body["spec"]["template"]["spec"]["volumes"].insert(0, {"name": "cache", "emptyDir": {}})


def reverse_env(body: dict[str, Any]) -> None:
    for container in body["spec"]["template"]["spec"]["containers"]:
        container.get("env", []).reverse()


def fresh(body: dict[str, Any]) -> dict[str, Any]:
    return body


def wired_default(body: dict[str, Any]) -> dict[str, Any]:
    return wire(body, wiring_for(body))


RACES = [
    # (what we observed, what we want, what another writer did before our PATCH arrived)
    ("fresh wire, containers swapped", fresh, lambda b: wiring_for(b, ("app",)), swap_containers),
    (
        "move mount path, containers swapped",
        wired_default,
        lambda b: wiring_for(b, mount_path="/x"),
        swap_containers,
    ),
    ("move mount path, env reversed", wired_default, lambda b: wiring_for(b, mount_path="/x"), reverse_env),
    ("unwire, volume prepended", wired_default, lambda b: None, prepend_volume),
    ("unwire, env reversed", wired_default, lambda b: None, reverse_env),
    (
        "narrow selection, containers swapped",
        wired_default,
        lambda b: wiring_for(b, ("app",)),
        swap_containers,
    ),
]


@pytest.mark.parametrize(
    ("observed", "wanted", "meanwhile"), [r[1:] for r in RACES], ids=[r[0] for r in RACES]
)
def test_reordered_lists_make_the_patch_fail(
    observed: Callable[[dict[str, Any]], dict[str, Any]],
    wanted: Callable[[dict[str, Any]], Wiring | None],
    meanwhile: Callable[[dict[str, Any]], None],
) -> None:
    seen = observed(deployment())
    ops = wiring_ops(seen, wanted(deployment())).ops
    assert ops
    apply(seen, ops)  # the patch is fine against what we read ...
    current = copy.deepcopy(seen)
    meanwhile(current)
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply(current, ops)  # ... and refused against the reordered object


def test_appending_writer_does_not_break_or_lose_anything() -> None:
    seen = deployment()
    ops = wiring_ops(seen, wiring_for(seen)).ops
    current = copy.deepcopy(seen)
    current["spec"]["template"]["spec"]["containers"].append({"name": "debug", "image": "busybox"})
    result = apply(current, ops)
    assert containers_of(result)["debug"] == {"name": "debug", "image": "busybox"}
    assert_wired(result, wiring_for(seen), {"app", "envoy"})  # debug joined later; next resync wires it
    assert [op["op"] for op in wiring_ops(result, wiring_for(seen)).ops if op["op"] != "test"] == [
        "add",
        "add",
    ]


def rfc7386_merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as written in the RFC (what the emulator does on every PATCH)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = rfc7386_merge(result.get(key), value)
    return result


def test_a_naive_merge_patch_of_containers_would_drop_another_writers_container() -> None:
    """Why we do not send "our" containers list: lists are replaced whole by a merge patch."""
    seen = deployment()
    wired_view = wire(seen, wiring_for(seen))
    naive = {
        "spec": {"template": {"spec": {"containers": wired_view["spec"]["template"]["spec"]["containers"]}}}
    }
    current = copy.deepcopy(seen)
    current["spec"]["template"]["spec"]["containers"].append({"name": "debug", "image": "busybox"})

    merged = rfc7386_merge(current, naive)
    assert "debug" not in containers_of(merged)  # the other writer's container is gone

    patched = apply(current, wiring_ops(seen, wiring_for(seen)).ops)
    assert "debug" in containers_of(patched)  # our RFC 6902 ops keep it


# --------------------------------------------------------------------------------------
# Conflicts are problems, not ops
# --------------------------------------------------------------------------------------


def _volume(body: dict[str, Any], volume: dict[str, Any]) -> None:
    body["spec"]["template"]["spec"]["volumes"].append(volume)


def _env(container: int, entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        body["spec"]["template"]["spec"]["containers"][container].setdefault("env", []).append(entry)

    return edit


def _wired_by(owner: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        body["metadata"]["annotations"]["trustwire.io/wired-by"] = owner

    return edit


def _mount_at(container: int) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        body["spec"]["template"]["spec"]["containers"][container]["volumeMounts"].append(
            {"name": "config", "mountPath": MOUNT}
        )

    return edit


CONFLICTS: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...], str, str | None]] = [
    # id, edit, selection, pattern the problem must match, JSON pointer prefix no op may touch (None: no ops)
    (
        "volume is a configMap",
        lambda b: _volume(b, {"name": "trustwire", "configMap": {"name": "mine"}}),
        (),
        r"Deployment governance/dgc has a volume 'trustwire' .*spec\.template\.spec\.volumes",
        None,
    ),
    (
        "volume projects another identity's secrets",
        lambda b: _volume(
            b, {"name": "trustwire", "projected": {"sources": [{"secret": {"name": "x-trustwire-trust"}}]}}
        ),
        (),
        r"volume 'trustwire' that is not trustwire's projected volume",
        None,
    ),
    (
        "wired by another identity",
        _wired_by("governance/other"),
        (),
        r"Deployment governance/dgc is wired by governance/other "
        r"\(metadata\.annotations\['trustwire\.io/wired-by'\]\)",
        None,
    ),
    (
        "user's TRUSTWIRE_DIR",
        _env(0, {"name": "TRUSTWIRE_DIR", "value": "/etc/mine"}),
        (),
        r"containers\['app'\] sets TRUSTWIRE_DIR to another value "
        r"\(spec\.template\.spec\.containers\[\]\.env\)",
        "/spec/template/spec/containers/0/env",
    ),
    (
        "TRUSTWIRE_DIR from a secret",
        _env(1, {"name": "TRUSTWIRE_DIR", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        (),
        r"containers\['envoy'\] sets TRUSTWIRE_DIR",
        "/spec/template/spec/containers/1/env",
    ),
    (
        "named container missing",
        lambda b: None,
        ("app", "ghost"),
        r"Deployment governance/dgc has no container named 'ghost' "
        r"\(spec\.template\.spec\.containers / initContainers\)",
        "/spec/template/spec/containers/1",
    ),
    (
        "another volume at the mount path",
        _mount_at(0),
        (),
        r"containers\['app'\] already mounts volume 'config' at /var/run/trustwire",
        "/spec/template/spec/containers/0",
    ),
]


@pytest.mark.parametrize(
    ("edit", "selection", "problem", "untouched"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS]
)
def test_conflicts_are_reported_and_left_untouched(
    edit: Callable[[dict[str, Any]], None], selection: tuple[str, ...], problem: str, untouched: str | None
) -> None:
    body = deployment()
    edit(body)
    result = wiring_ops(body, wiring_for(body, selection))
    assert len(result.problems) == 1
    assert re.search(problem, result.problems[0]), result.problems[0]
    if untouched is None:
        assert result.ops == []
        return
    for op in result.ops:
        if op["op"] != "test":
            assert not (op["path"] + "/").startswith(untouched + "/"), op
    after = apply(body, result.ops)
    assert_indexed_ops_pinned(result.ops)
    # The rest is wired; a resync reports the same conflict and makes no further ops.
    assert after["metadata"]["annotations"]["trustwire.io/wired-by"] == "governance/dgc"
    again = wiring_ops(after, wiring_for(body, selection))
    assert again.ops == [] and again.problems == result.problems


def test_workload_without_pod_template_is_a_problem() -> None:
    result = wiring_ops(
        {"kind": "Deployment", "metadata": {"name": "x", "namespace": "n"}, "spec": {}},
        wiring_for(deployment()),
    )
    assert result.ops == []
    assert result.problems == ["Deployment n/x has no spec.template.spec; cannot wire it"]


# --------------------------------------------------------------------------------------
# material_hash and pointers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        ({"a": b"1", "b": b"2"}, {"b": b"2", "a": b"1"}, True),  # order of the mapping does not matter
        ({"a": b"1"}, {"a": b"2"}, False),  # content matters
        ({"a": b"1"}, {"b": b"1"}, False),  # names matter
        ({"a": b"bc"}, {"ab": b"c"}, False),  # framing: name/content boundary
        ({"a": b"", "b": b"x"}, {"a": b"b", "": b"x"}, False),  # framing across files
        ({}, {"": b""}, False),
    ],
)
def test_material_hash(left: dict[str, bytes], right: dict[str, bytes], equal: bool) -> None:
    assert (material_hash(left) == material_hash(right)) is equal
    assert re.fullmatch(r"[0-9a-f]{32}", material_hash(left))


def test_material_hash_is_pinned() -> None:
    # Fixed values: a change here would roll every wired workload in every cluster on upgrade.
    assert material_hash({"tls.crt": b"one"}) == "b7e0dcf6580961497b5c125c6474b483"
    assert material_hash({"peers.json": b"[]", "tls.crt": b"one"}) == "1cec877e8cce593dabcb199e2559376a"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (
            ("metadata", "annotations", "trustwire.io/wired-by"),
            "/metadata/annotations/trustwire.io~1wired-by",
        ),
        (("a~b", "c/d~/e"), "/a~0b/c~1d~0~1e"),
        (("spec", "containers", 0, "env", "-"), "/spec/containers/0/env/-"),
    ],
)
def test_pointer_escapes_per_rfc6901(parts: tuple[str | int, ...], expected: str) -> None:
    assert pointer(*parts) == expected
    doc = {"metadata": {"annotations": {"trustwire.io/wired-by": "x"}}}
    if parts[0] == "metadata":
        assert jsonpatch.JsonPointer(expected).resolve(doc) == "x"


# --------------------------------------------------------------------------------------
# Container selection alone
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "selected", "missing"),
    [
        ((), [("containers", "app"), ("containers", "envoy")], []),
        (("envoy",), [("containers", "envoy")], []),
        (("migrate", "app"), [("initContainers", "migrate"), ("containers", "app")], []),
        (("app", "app"), [("containers", "app")], []),
        (("nope", "app"), [("containers", "app")], ["nope"]),
    ],
    ids=["all-containers", "one", "init-when-named", "named-twice", "unknown-name"],
)
def test_select_picks_named_containers_and_reports_unknown_names(
    wanted: tuple[str, ...], selected: list[tuple[str, str]], missing: list[str]
) -> None:
    containers = wiring_containers.containers_of(deployment())
    chosen, problems = wiring_containers.select(containers, wanted, "Deployment governance/dgc")
    assert [(c.field, c.name) for c in chosen] == selected
    assert problems == [
        f"Deployment governance/dgc has no container named {name!r} (spec.template.spec.containers / initContainers)"
        for name in missing
    ]


def test_a_container_name_is_looked_up_in_containers_first() -> None:
    workload = deployment()
    workload["spec"]["template"]["spec"]["initContainers"][0]["name"] = "app"
    chosen, _ = wiring_containers.select(wiring_containers.containers_of(workload), ("app",), "w")
    assert [(c.field, c.index) for c in chosen] == [("containers", 0)]
