"""trustwire.controller.state.State: the watch cache and its "who is affected?" indexes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from trustwire import names
from trustwire.controller.state import (
    EVERYTHING,
    Change,
    State,
    identity_change,
    ref_of,
    relationship_change,
    remembered,
)
from trustwire.model import IdentityRef
from trustwire.plan.identity import Publication

Factory = Callable[..., dict[str, Any]]


def assert_no_empty_index_entries(state: State) -> None:
    for index in (state.rel_index, state.workload_index, state.template_index):
        assert all(index.values()), f"empty entry left behind in {dict(index)}"


@pytest.fixture
def state() -> State:
    return State()


# ======================================================================================
# Identities
# ======================================================================================
def test_put_identity_indexes_workloads_and_templates(state: State, identity_body: Factory) -> None:
    ref = state.put_identity(
        identity_body(
            "dgc",
            "gov",
            workloads=[{"kind": "Deployment", "name": "web"}, {"kind": "StatefulSet", "name": "db"}],
            templates=[
                {"name": "a", "configMapRef": {"name": "tpl", "key": "a"}},
                {"name": "b", "configMapRef": {"name": "tpl", "key": "b"}},
                {"name": "c", "inline": "x"},
            ],
            acceptFrom={"namespaces": ["jobs"]},
        )
    )
    assert ref == IdentityRef("gov", "dgc")
    assert dict(state.workload_index) == {
        ("gov", "Deployment", "web"): {ref},
        ("gov", "StatefulSet", "db"): {ref},
    }
    assert dict(state.template_index) == {("gov", "tpl"): {ref}}  # inline templates need no watch
    entry = state.lookup(ref)
    assert entry is not None and entry.identity is not None
    assert entry.accept_from == ("jobs",)
    assert (entry.deleting, entry.distributed) == (False, frozenset())
    assert state.identities[ref]["metadata"]["name"] == "dgc"


def test_updating_an_identity_moves_its_index_entries(state: State, identity_body: Factory) -> None:
    ref = state.put_identity(
        identity_body(
            "dgc",
            "gov",
            workloads=[{"kind": "Deployment", "name": "old"}],
            templates=[{"name": "t", "configMapRef": {"name": "cm1", "key": "k"}}],
        )
    )
    state.put_identity(
        identity_body(
            "dgc",
            "gov",
            workloads=[{"kind": "DaemonSet", "name": "new"}],
            templates=[{"name": "t", "configMapRef": {"name": "cm2", "key": "k"}}],
        )
    )
    assert dict(state.workload_index) == {("gov", "DaemonSet", "new"): {ref}}
    assert dict(state.template_index) == {("gov", "cm2"): {ref}}
    assert_no_empty_index_entries(state)


def test_shared_workload_survives_dropping_one_identity(state: State, identity_body: Factory) -> None:
    spec = {
        "workloads": [{"kind": "Deployment", "name": "web"}],
        "templates": [{"name": "t", "configMapRef": {"name": "tpl", "key": "k"}}],
    }
    one = state.put_identity(identity_body("one", "gov", **spec))
    two = state.put_identity(identity_body("two", "gov", **spec))
    other_ns = state.put_identity(identity_body("one", "other", **spec))
    assert state.workload_index[("gov", "Deployment", "web")] == {one, two}
    assert state.workload_index[("other", "Deployment", "web")] == {other_ns}
    state.drop_identity(one)
    assert state.workload_index[("gov", "Deployment", "web")] == {two}
    assert state.template_index[("gov", "tpl")] == {two}
    assert state.lookup(one) is None and one not in state.identities
    state.drop_identity(two)
    state.drop_identity(other_ns)
    assert dict(state.workload_index) == {} and dict(state.template_index) == {}
    assert state.identities == {} and state.entries == {}


def test_dropping_an_unknown_identity_is_harmless(state: State) -> None:
    state.drop_identity(IdentityRef("gov", "ghost"))
    assert_no_empty_index_entries(state)
    assert dict(state.workload_index) == {}


def test_invalid_identity_is_kept_with_lenient_consent(state: State, identity_body: Factory) -> None:
    ref = state.put_identity(
        identity_body(
            "dgc",
            "gov",
            dnsName=["typo"],
            acceptFrom={"namespaces": ["jobs"]},
            workloads=[{"kind": "Deployment", "name": "web"}],
        )
    )
    entry = state.lookup(ref)
    assert entry is not None
    assert entry.identity is None  # the spec does not parse ...
    assert entry.accepts("jobs")  # ... but consent given is not withdrawn by a typo
    assert dict(state.workload_index) == {}  # nothing is wired from an invalid spec
    assert ref in state.identities


def test_entry_reflects_deletion_and_distribution(state: State, identity_body: Factory) -> None:
    body = identity_body("dgc", "gov", metadata={"deletionTimestamp": "2031-01-01T00:00:00Z"})
    body["status"] = {"peers": [{"relationship": "gov/r1"}, {"relationship": "jobs/r2"}, "garbage"]}
    entry = state.lookup(state.put_identity(body))
    assert entry is not None
    assert entry.deleting is True
    assert entry.distributed == frozenset({"gov/r1", "jobs/r2"})


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([{"type": "Stalled", "status": "True", "reason": "TrustTooLarge"}], "TrustTooLarge"),
        ([{"type": "Stalled", "status": "False", "reason": "NotStalled"}], None),
        ([{"type": "Ready", "status": "True", "reason": "Ready"}, "garbage"], None),
        ([], None),
    ],
)
def test_entry_carries_the_stalled_reason(
    state: State, identity_body: Factory, conditions: list[Any], expected: str | None
) -> None:
    body = identity_body("hub", "gov")
    body["status"] = {"conditions": conditions}
    entry = state.lookup(state.put_identity(body))
    assert entry is not None and entry.stalled_reason == expected


def test_ref_of_defaults_the_namespace() -> None:
    assert ref_of({"metadata": {"name": "x"}}) == IdentityRef("default", "x")
    assert ref_of({"metadata": {"name": "x", "namespace": "n"}}) == IdentityRef("n", "x")


# ======================================================================================
# Relationships
# ======================================================================================
def test_put_relationship_indexes_both_sides(state: State, relationship_body: Factory) -> None:
    key, affected = state.put_relationship(
        relationship_body("dgc", "jobserver", name="r", namespace="gov", b_namespace="jobs")
    )
    dgc, jobserver = IdentityRef("gov", "dgc"), IdentityRef("jobs", "jobserver")
    assert key == ("gov", "r")
    assert affected == {dgc, jobserver}
    assert dict(state.rel_index) == {dgc: {key}, jobserver: {key}}
    assert [r.name for r in state.relationships_of(dgc)] == ["r"]
    assert state.peers_of(dgc) == {jobserver}
    assert state.peers_of(jobserver) == {dgc}
    assert state.peers_of(IdentityRef("gov", "nobody")) == set()


def test_changing_the_pair_reports_old_and_new_sides(state: State, relationship_body: Factory) -> None:
    state.put_relationship(relationship_body("dgc", "jobserver", name="r", namespace="gov"))
    key, affected = state.put_relationship(relationship_body("dgc", "metadata", name="r", namespace="gov"))
    dgc, jobserver, metadata = (IdentityRef("gov", n) for n in ("dgc", "jobserver", "metadata"))
    assert affected == {dgc, jobserver, metadata}  # jobserver must lose the trust it had
    assert dict(state.rel_index) == {dgc: {key}, metadata: {key}}
    assert_no_empty_index_entries(state)


def test_relationship_turning_invalid_is_unindexed_but_kept(state: State, relationship_body: Factory) -> None:
    state.put_relationship(relationship_body("dgc", "jobserver", name="r", namespace="gov"))
    key, affected = state.put_relationship(relationship_body("dgc", "dgc", name="r", namespace="gov"))
    assert affected == {IdentityRef("gov", "dgc"), IdentityRef("gov", "jobserver")}
    record = state.relationships[key]
    assert record.parsed is None and record.error is not None
    assert "spec.between[1]" in record.error.fields
    assert dict(state.rel_index) == {}
    assert state.relationships_of(IdentityRef("gov", "dgc")) == []


def test_drop_relationship(state: State, relationship_body: Factory) -> None:
    key_1, _ = state.put_relationship(relationship_body("dgc", "jobserver", name="r1", namespace="gov"))
    key_2, _ = state.put_relationship(relationship_body("dgc", "metadata", name="r2", namespace="gov"))
    dgc = IdentityRef("gov", "dgc")
    assert [r.name for r in state.relationships_of(dgc)] == ["r1", "r2"]
    assert state.drop_relationship(key_1) == {dgc, IdentityRef("gov", "jobserver")}
    assert dict(state.rel_index) == {dgc: {key_2}, IdentityRef("gov", "metadata"): {key_2}}
    assert state.drop_relationship(key_1) == set()  # twice is harmless
    state.drop_relationship(key_2)
    assert dict(state.rel_index) == {} and state.relationships == {}


def test_publication_cache_is_forgotten_on_request(state: State) -> None:
    """Peers' material is derived from their Secrets (plan.identity.publication_from_secrets);
    the state only caches it, and forgets it when those Secrets or the spec change."""
    ref = IdentityRef("ns", "alpha")
    state.publications.fetched(ref, state.publications.epoch(ref), Publication(b"pem", (), {}))
    assert ref in state.publications
    state.publications.forget(ref)
    assert ref not in state.publications
    state.publications.forget(ref)  # forgetting twice is harmless
    state.publications.fetched(ref, state.publications.epoch(ref), None)
    assert ref in state.publications and state.publications.get(ref) is None  # "nothing yet" is kept too


def test_a_fetch_that_raced_a_change_is_not_kept(state: State) -> None:
    """A reader's fetch began before the peer changed: what it read may already be replaced,
    so it must not stay cached (the echo of the peer's own write wakes nobody to correct it)."""
    ref = IdentityRef("ns", "alpha")
    epoch = state.publications.epoch(ref)
    state.publications.forget(ref)
    state.publications.fetched(ref, epoch, Publication(b"old", (), {}))
    assert ref not in state.publications


@pytest.mark.parametrize(("first", "second"), [(None, "material"), ("material", None),
                                               ("material", "other material")])
def test_two_fetches_of_one_epoch_that_disagree_are_forgotten(
        state: State, first: str | None, second: str | None) -> None:
    """Readers fetching while the peer writes may read "nothing yet" or the finished material,
    and land in either order. The cache cannot tell which is newer, and a writer comparing
    its publication with the cache would leave the other reader uninformed: so the entry is
    dropped and the caller makes every reader fetch again."""
    ref = IdentityRef("ns", "alpha")
    epoch = state.publications.epoch(ref)
    value = {None: None, "material": Publication(b"new", (), {}), "other material": Publication(b"x", (), {})}
    assert state.publications.fetched(ref, epoch, value[first]) is True
    assert state.publications.fetched(ref, epoch, value[first]) is True  # agreeing fetches are kept
    assert ref in state.publications
    assert state.publications.fetched(ref, epoch, value[second]) is False
    assert ref not in state.publications and state.publications.epoch(ref) == epoch + 1


@pytest.mark.parametrize(("cached", "written", "unchanged"), [
    ("missing", "new", False),      # a reader may be mid-fetch: it must look again
    ("nothing yet", "new", False),  # a reader saw "not published": it waits for this
    ("old", "new", False),
    ("new", "new", True),           # e.g. a renewed leaf: peers trust the same CA and keys
    ("nothing yet", "nothing yet", True),  # a CA written, credentials not yet
])
def test_readers_hold_what_an_own_write_publishes_only_if_it_is_equal(
        state: State, cached: str, written: str, unchanged: bool) -> None:
    ref = IdentityRef("ns", "alpha")
    values = {"nothing yet": None, "old": Publication(b"old", (), {}), "new": Publication(b"new", (), {})}
    if cached != "missing":
        state.publications.fetched(ref, state.publications.epoch(ref), values[cached])
    assert state.publications.unchanged(ref, values[written]) is unchanged


def test_echo_of_our_own_write_is_recognised_and_nothing_else(state: State) -> None:
    ours = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"a": "Yg=="},
            "metadata": {"name": "s", "namespace": "ns", "labels": {"x": "y"}, "resourceVersion": "7"}}
    assert not state.is_echo("secrets", ours, deleted=False)  # nothing written yet: news
    state.wrote("secrets", ours)
    replayed = _with(ours, "metadata.resourceVersion", "8")  # bookkeeping differs, content not
    assert state.is_echo("secrets", replayed, deleted=False)
    for path, value in (("data.a", "Yw=="), ("metadata.labels.x", "z"), ("type", "kubernetes.io/tls"),
                        ("metadata.annotations", {"k": "v"})):
        assert not state.is_echo("secrets", _with(ours, path, value), deleted=False), path
    assert not state.is_echo("configmaps", ours, deleted=False)  # another kind, another object
    assert not state.is_echo("secrets", ours, deleted=True)  # a deletion is always news
    assert not state.is_echo("secrets", ours, deleted=False)  # and forgets what was written


# ======================================================================================
# Which managed objects exist (names only)
# ======================================================================================
def _object(name: str, namespace: str = "ns", *, managed: bool = True) -> dict[str, Any]:
    labels = {names.MANAGED_BY: names.MANAGER} if managed else {"app": "theirs"}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


@pytest.mark.parametrize(("listed", "events", "query", "may_exist"), [
    # nothing listed yet: anything may exist
    ([], [], ("secrets", "ns", "a"), True),
    # listed, never seen: known absent — in that namespace only
    (["ns"], [], ("secrets", "ns", "a"), False),
    (["ns"], [], ("secrets", "other", "a"), True),
    ([None], [], ("secrets", "other", "a"), False),  # a cluster-wide listing covers every namespace
    # seen by the watch, in its kind only
    (["ns"], [("secrets", _object("a"), False)], ("secrets", "ns", "a"), True),
    (["ns"], [("secrets", _object("a"), False)], ("configmaps", "ns", "a"), False),
    # deleted: gone; and a deleted object comes back with its next event
    (["ns"], [("secrets", _object("a"), False), ("secrets", _object("a"), True)], ("secrets", "ns", "a"), False),
    (["ns"], [("secrets", _object("a"), True), ("secrets", _object("a"), False)], ("secrets", "ns", "a"), True),
    # not ours: never learnt from a watch event (a labelled watch does not deliver it)...
    (["ns"], [("secrets", _object("a", managed=False), False)], ("secrets", "ns", "a"), False),
    # ...and one that lost our label stays known: its name is taken
    (["ns"], [("secrets", _object("a"), False), ("secrets", _object("a", managed=False), False)],
     ("secrets", "ns", "a"), True),
])
def test_the_inventory_knows_absence_only_where_it_listed(
        state: State, listed: list[str | None], events: list[tuple[str, dict[str, Any], bool]],
        query: tuple[str, str, str], may_exist: bool) -> None:
    for namespace in listed:
        state.inventory.listed(namespace)
    for plural, body, deleted in events:
        state.inventory.observed(plural, body, deleted)
    assert state.inventory.may_exist(*query) is may_exist


def test_our_writes_and_a_refused_create_make_a_name_known(state: State) -> None:
    state.inventory.listed("ns")
    state.wrote("secrets", _object("written"))
    state.inventory.exists("secrets", "ns", "refused")  # a create answered 409: someone has that name
    assert state.inventory.may_exist("secrets", "ns", "written")
    assert state.inventory.may_exist("secrets", "ns", "refused")
    state.inventory.gone("secrets", "ns", "written")
    assert not state.inventory.may_exist("secrets", "ns", "written")


# ======================================================================================
# Who must look again after a watch event
# ======================================================================================
def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


NOTHING = Change(own=False, relationships=frozenset(), peers=False)
STALLED = [{"type": "Stalled", "status": "True", "reason": "TrustTooLarge"}]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # our own status echoes: conditions, summaries — nobody needs to look again
        ("status.conditions", [{"type": "Ready", "status": "False", "reason": "PeerPending"}], NOTHING),
        ("status.certificate", {"serial": "ff"}, NOTHING),
        ("metadata.resourceVersion", "999", NOTHING),
        ("metadata.managedFields", [{"manager": "trustwire"}], NOTHING),
        # what relationships read
        ("status.peers", [{"relationship": "gov/r1"}], Change(own=False, relationships=frozenset({"gov/r1"}),
                                                               peers=False)),  # only the one that came
        ("status.conditions", STALLED, Change(own=False, relationships=None, peers=False)),  # all
        # what peers read as rotation evidence
        ("status.trust", {"caFingerprints": ["ab"], "kids": []},
         Change(own=False, relationships=frozenset(), peers=True)),
        ("status.rolledOut", False, Change(own=False, relationships=frozenset(), peers=True)),
        # what a user writes: everything
        ("spec.dnsNames", ["x.example.com"], EVERYTHING),
        ("metadata.generation", 2, EVERYTHING),
        ("metadata.annotations", {"trustwire.io/rotate": "ca"}, EVERYTHING),
        # our finalizer appearing is the echo of the pass that added it; any other change is news
        ("metadata.finalizers", ["trustwire.io/finalizer"], NOTHING),
        ("metadata.finalizers", ["example.com/theirs"], EVERYTHING),
        ("metadata.finalizers", ["example.com/theirs", "trustwire.io/finalizer"], EVERYTHING),
        ("metadata.deletionTimestamp", "2031-01-01T00:00:00Z", EVERYTHING),
    ],
)
def test_identity_change_names_who_must_look_again(
    identity_body: Factory, path: str, value: Any, expected: Change
) -> None:
    old = identity_body("dgc", "gov")
    old["status"] = {"peers": [], "trust": {"caFingerprints": [], "kids": []}, "rolledOut": True, "conditions": [],
                     "certificate": {"serial": "01"}}
    assert identity_change(old, _with(old, path, value)) == expected
    # the slim copy the state keeps between events tells the same story
    assert identity_change(remembered(old), _with(old, path, value)) == expected


def test_our_finalizer_removed_is_news(identity_body: Factory) -> None:
    """Someone removed trustwire's finalizer: the next pass must put it back."""
    old = _with(identity_body("dgc", "gov"), "metadata.finalizers", ["trustwire.io/finalizer"])
    assert identity_change(old, _with(old, "metadata.finalizers", [])) == EVERYTHING
    assert identity_change(remembered(old), _with(old, "metadata.finalizers", [])) == EVERYTHING


def test_identity_change_for_new_and_deleted_objects_is_everything(identity_body: Factory) -> None:
    body = identity_body("dgc", "gov")
    assert identity_change(None, body) == EVERYTHING
    assert identity_change(body, None) == EVERYTHING


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("status.conditions", [{"type": "Ready", "status": "True"}], NOTHING),
        ("spec.initiator", "dgc", EVERYTHING),
        ("metadata.deletionTimestamp", "2031-01-01T00:00:00Z", EVERYTHING),
    ],
)
def test_relationship_change_is_only_about_spec_and_metadata(
    relationship_body: Factory, path: str, value: Any, expected: Change
) -> None:
    old = relationship_body("dgc", "jobserver", name="r", namespace="gov", b_namespace="jobs")
    assert relationship_change(old, _with(old, path, value)) == expected
    assert relationship_change(None, old) == EVERYTHING


# ======================================================================================
# External members
# ======================================================================================
def _external_rel(bundle: str, name: str = "r") -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": name, "namespace": "gov"},
            "spec": {"between": [{"identity": "dgc"}, {"external": {
                "name": "onprem", "caBundleRef": {"kind": "ConfigMap", "name": bundle}}}]}}


def test_an_external_members_bundle_is_indexed_and_dropped_with_its_relationship(state: State) -> None:
    key, affected = state.put_relationship(_external_rel("onprem-ca"))
    assert affected == {IdentityRef("gov", "dgc")}  # the outsider is no identity to wake
    assert dict(state.bundle_index) == {("gov", "onprem-ca"): {key}}
    state.put_relationship(_external_rel("other-ca"))  # the bundle renamed
    assert dict(state.bundle_index) == {("gov", "other-ca"): {key}}
    state.drop_relationship(key)
    assert dict(state.bundle_index) == {}


def _grouped(relationship_body: Factory, name: str, group: str | None, namespace: str = "ns") -> dict[str, Any]:
    shared = {"enabled": True, **({"group": group} if group else {})}
    return relationship_body("a", f"b-{name}", name=name, namespace=namespace, sharedSecret=shared)


def test_group_members_and_the_groups_a_relationship_left(state: State, relationship_body: Factory) -> None:
    """A group's Secret goes once no relationship of its namespace names it: the state
    remembers every group a relationship stopped naming (deleted, or changed)."""
    state.put_relationship(_grouped(relationship_body, "one", "g"))
    state.put_relationship(_grouped(relationship_body, "two", "g"))
    state.put_relationship(_grouped(relationship_body, "three", "g", namespace="other"))
    state.put_relationship(_grouped(relationship_body, "four", None))
    assert [r.name for r in state.group_members("ns", "g")] == ["one", "two"]
    assert [r.name for r in state.group_members("other", "g")] == ["three"]
    assert state.former_groups == set()
    state.put_relationship(_grouped(relationship_body, "one", "h"))  # moved to another group
    state.drop_relationship(("ns", "four"))  # no group: nothing to remember
    assert state.former_groups == {("ns", "g")}
    assert [r.name for r in state.group_members("ns", "g")] == ["two"]
    state.drop_relationship(("ns", "two"))
    assert state.group_members("ns", "g") == [] and ("ns", "g") in state.former_groups
