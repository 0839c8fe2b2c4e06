"""Carrying out a reorganisation, in plain Python: a move's lifecycle, what apply locks, the
manifest's rule for keeping keys apart, and the SQL and checks of a merge."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.isolation.merge_sql import (
    Count,
    MoveRefused,
    Reference,
    TableShape,
    insert_order,
    insert_query,
    renumbered,
    same_tables,
    verified,
)
from services.onboarding.moves import Move, MoveStatus, PlanNotApplicable, hosts_differ, locked
from services.onboarding.reorganisation import plan
from shared.catalogue import IsolationTier, ManifestError, MergeKeys, ServiceManifest, load_manifest
from tests.test_reorganisation import CUMBRIA_VESTING, real, tenancy


def test_a_move_settles_once_and_only_a_failed_one_is_asked_for_again() -> None:
    move = Move("s", "t", MoveStatus.REQUESTED)
    assert move.wait_for_target()
    assert move.start_moving()
    assert not move.start_moving()  # a repeated activation asks for the data once
    assert move.moved()
    assert not move.moved()
    assert not move.fail("isolation", "late")  # a late failure of a settled move is ignored
    assert not move.retry()
    failing = Move("s", "t", MoveStatus.MOVING)
    assert failing.fail("isolation", "key clash")
    assert (failing.status, failing.failed_step) == (MoveStatus.FAILED, "isolation")
    assert failing.retry()
    assert (failing.status, failing.reason, failing.attempts) == (MoveStatus.REQUESTED, None, 2)


def test_apply_locks_only_a_ready_plan_naming_every_reason() -> None:
    unhosted = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")])
    with pytest.raises(PlanNotApplicable, match="must name the successor that hosts"):
        locked(unhosted)
    with pytest.raises(PlanNotApplicable, match="no live tenancy"):
        locked(plan(real, date(2026, 4, 1), [tenancy("E10000006")]))
    hosted = plan(real, CUMBRIA_VESTING, [tenancy("E10000006")], {"CMA": "CBD"})
    assert [t.tenancy_id for t in locked(hosted)] == [tenancy("E10000006").id]
    assert hosts_differ({"CMA": "CBD"}, {"CMA": "CBD"}) is None
    assert "CMA=CBD" in (hosts_differ({"CMA": "CBD"}, {"CMA": "WAF"}) or "")


def manifest(**fields: Any) -> dict[str, Any]:
    return {"id": "svc", "name": "Svc", "owner_council": "E09000012", **fields}


def test_a_pooled_service_cannot_ask_for_renumbered_keys(tmp_path: Any) -> None:
    assert ServiceManifest.model_validate(manifest()).reorganisation.merge_keys is MergeKeys.KEEP
    path = tmp_path / "svc.yaml"
    path.write_text(
        "id: svc\nname: Svc\nowner_council: E09000012\nisolation: pooled\n"
        "reorganisation:\n  merge_keys: renumber\n"
    )
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert refused.value.problems[0].startswith("reorganisation.merge_keys: a pooled service's")
    path.write_text(
        "id: svc\nname: Svc\nowner_council: E09000012\nreorganisation:\n  merge_keys: x\n"
    )
    with pytest.raises(ManifestError, match=r"reorganisation\.merge_keys"):
        load_manifest(path)


def test_renumbered_keys_move_past_the_targets_and_references_follow() -> None:
    parents = TableShape("parents", False, ("id", "name"), ("id",))
    children = TableShape("children", False, ("id", "parent_id", "note"), ("id",))
    references = [Reference("children", "parent_id", "parents", "id")]
    offsets = {("parents", "id"): 40, ("children", "id"): 7}
    assert renumbered(children, references, offsets) == [
        'r."id" + 7',
        'r."parent_id" + 40',
        'r."note"',
    ]
    assert renumbered(children, references, {}) == ['r."id"', 'r."parent_id"', 'r."note"']
    assert insert_order([children, parents], references) == ["parents", "children"]
    hostile = TableShape('x"; DROP TABLE y; --', False, ("id",), ())
    with pytest.raises(ValueError, match="not a safe SQL identifier"):
        insert_query("tenant_1", hostile, 'ONLY "tenant_2"."x"', ['r."id"'])
    query = insert_query("tenant_1", parents, 'ONLY "tenant_2"."parents"', ['r."id"', 'r."name"'])
    assert query.startswith('INSERT INTO "tenant_1"."parents" ("id", "name") OVERRIDING')


def test_a_move_is_verified_by_rows_and_checksums_or_refused_naming_the_table() -> None:
    moved = verified("notes", Count(3, 30), Count(2, 5), Count(5, 35))
    assert (moved.source_rows, moved.target_rows_after, moved.source_checksum) == (3, 5, "30")
    with pytest.raises(MoveRefused, match="table notes: 3 rows to move, but the target has 2"):
        verified("notes", Count(3, 30), Count(2, 5), Count(4, 35))
    with pytest.raises(MoveRefused, match="table notes: checksum mismatch"):
        verified("notes", Count(3, 30), Count(2, 5), Count(5, 36))
    a = TableShape("notes", False, ("id", "body"), ())
    b = TableShape("notes", False, ("id", "body", "extra"), ())
    assert same_tables([a], [a]) is None
    assert "notes" in (same_tables([a], [b]) or "")


def test_the_example_manifests_say_how_keys_are_kept_apart() -> None:
    from shared.catalogue import load_catalogue
    from tests.harness import CATALOGUE

    keys = {m.id: (m.isolation, m.reorganisation.merge_keys) for m in load_catalogue(CATALOGUE)}
    assert keys == {
        "bin-collections": (IsolationTier.SCHEMA, MergeKeys.RENUMBER),
        "parking-permits": (IsolationTier.DATABASE, MergeKeys.RENUMBER),
        "planning-comments": (IsolationTier.POOLED, MergeKeys.KEEP),
    }
