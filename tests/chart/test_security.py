"""Pod security: the operator runs as a locked-down, non-root, read-only container."""

from __future__ import annotations

import pytest

from .render import SCENARIOS, one, render_objects


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pod_security_context(name: str) -> None:
    pod = one(render_objects(SCENARIOS[name]), "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert psc.get("runAsUser", 65532) != 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")

    (container,) = pod["containers"]
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in csc or csc["privileged"] is False
    assert csc["runAsNonRoot"] is True
    # Nothing in the container overrides the pod-level user with root.
    assert csc.get("runAsUser", 65532) != 0


def test_default_pod_pins_no_uid_so_openshift_can_assign_one() -> None:
    """OpenShift's restricted SCC assigns a UID (and fsGroup) from the namespace's range and
    refuses pods that pin one outside it; the image's numeric USER is what runAsNonRoot checks."""
    pod = one(render_objects({}), "Deployment")["spec"]["template"]["spec"]
    pinned = {"runAsUser", "runAsGroup", "fsGroup"}
    assert not pinned & set(pod["securityContext"])
    assert not pinned & set(pod["containers"][0]["securityContext"])


def test_security_contexts_follow_the_values() -> None:
    pod_context = {"runAsNonRoot": True, "runAsUser": 1000680000, "seccompProfile": {"type": "RuntimeDefault"}}
    container_context = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                         "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    deployment = one(render_objects({"securityContext": pod_context,
                                     "containerSecurityContext": container_context}), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == pod_context
    assert pod["containers"][0]["securityContext"] == container_context


def test_tmp_is_a_writable_emptydir() -> None:
    pod = one(render_objects({}), "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    tmp = mounts["/tmp"]
    assert not tmp.get("readOnly", False)
    assert "emptyDir" in volumes[tmp["name"]]
    # No other volume types (hostPath and friends) are mounted.
    assert all(set(v) == {"name", "emptyDir"} for v in pod["volumes"])
