"""Tests for the plain-Python annotator assignment: balance, items, rating targets, order, attention checks."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from annotations.assignment import AssignmentPlan, AttentionChecks, Candidate, plan_assignment

REPO_ROOT = Path(__file__).resolve().parents[2]
CONDITIONS = ("CF:Unrevised", "MT+CF:Revised", "MT+CF:Unrevised", "MT:Unrevised")


def study(n_items: int, target: int, ratings: dict[tuple[str, int], int] | None = None) -> list[Candidate]:
    """One explanation per (condition, item), as in the paper: every student explains every question."""
    ratings = ratings or {}
    return [
        Candidate(f"{condition}/{item}", item, condition, ratings.get((condition, item), 0), target)
        for condition in CONDITIONS
        for item in range(n_items)
    ]


def by_id(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {c.explanation_id: c for c in candidates}


def reserve(candidates: list[Candidate], plan: AssignmentPlan) -> list[Candidate]:
    """What the caller does under its lock: count the planned explanations as reserved ratings."""
    planned = Counter(plan.explanation_ids)
    return [
        Candidate(c.explanation_id, c.item_id, c.condition, c.ratings + planned[c.explanation_id], c.target)
        for c in candidates
    ]


def test_single_mode_blocks_hold_each_condition_once():
    plan = plan_assignment(study(20, 3), mode="single", wanted=12, seed=1)

    assert plan.complete and plan.blocks_planned == 3 and plan.block_size == 4
    for block in range(3):
        shown = [s.conditions[0] for s in plan.rating_screens if s.block == block]
        assert sorted(shown) == sorted(CONDITIONS)
    assert [s.block for s in plan.rating_screens] == [0] * 4 + [1] * 4 + [2] * 4


def test_single_mode_never_repeats_an_item_nor_shows_a_seen_one():
    seen = {0, 1, 2, 3}
    plan = plan_assignment(study(12, 3), mode="single", wanted=8, seed=5, seen_item_ids=seen)

    items = [s.item_id for s in plan.rating_screens]
    assert len(items) == 8
    assert len(set(items)) == len(items)
    assert not seen & set(items)


def test_least_rated_explanations_come_first():
    ratings = {(condition, item): 2 for condition in CONDITIONS for item in range(8)}
    least = {"CF:Unrevised": 0, "MT+CF:Revised": 1, "MT+CF:Unrevised": 2, "MT:Unrevised": 3}
    for condition, item in least.items():
        ratings[(condition, item)] = 0
        ratings[(condition, item + 4)] = 1
    plan = plan_assignment(study(8, 3, ratings), mode="single", wanted=8, seed=3)

    chosen = {(s.conditions[0], s.item_id) for s in plan.rating_screens}
    assert chosen == {(c, i) for c, i in least.items()} | {(c, i + 4) for c, i in least.items()}


def test_an_explanation_at_its_target_is_never_planned():
    ratings = {(condition, item): 3 for condition in CONDITIONS for item in range(6)}
    ratings[("MT:Unrevised", 5)] = 2  # the only MT explanation still open
    plan = plan_assignment(study(6, 3, ratings), mode="single", wanted=8, seed=0)

    assert plan.screens == []
    assert plan.blocks_planned == 0
    assert "CF:Unrevised has 0 explanations under target" in plan.reason


def test_a_greedy_dead_end_is_resolved_by_reassigning_items():
    # MT:Unrevised is only open on item 0, which CF:Unrevised also prefers (fewest ratings); a plan exists
    # only if CF takes item 1, whatever order the conditions pick in.
    candidates = [
        Candidate("cf-0", 0, "CF:Unrevised", 0, 3),
        Candidate("cf-1", 1, "CF:Unrevised", 2, 3),
        Candidate("mt-0", 0, "MT:Unrevised", 1, 3),
        Candidate("mt-1", 1, "MT:Unrevised", 3, 3),
    ]
    for seed in range(10):
        plan = plan_assignment(candidates, mode="single", wanted=2, seed=seed)
        assert plan.complete
        assert sorted(plan.explanation_ids) == ["cf-1", "mt-0"]


def test_targets_hold_across_fifty_sequential_annotators():
    target, n_items = 3, 20
    candidates = study(n_items, target)
    plans = []
    for annotator in range(50):
        plan = plan_assignment(candidates, mode="single", wanted=8, seed=annotator)
        assert len(set(plan.explanation_ids)) == len(plan.explanation_ids)
        candidates = reserve(candidates, plan)
        assert max(c.ratings for c in candidates) <= target
        plans.append(plan)

    # 20 items x 4 conditions x 3 ratings = 240 ratings = 30 full plans of 8; the rest are told why.
    assert sum(len(p.explanation_ids) for p in plans) == n_items * len(CONDITIONS) * target
    assert all(p.complete for p in plans[:30])
    assert all(p.screens == [] and "reached its target" in p.reason for p in plans[30:])
    for plan in plans[:30]:
        assert Counter(s.conditions[0] for s in plan.rating_screens) == dict.fromkeys(CONDITIONS, 2)


def test_ratings_stay_even_while_annotators_arrive():
    candidates = study(30, 5)
    for annotator in range(15):
        candidates = reserve(candidates, plan_assignment(candidates, mode="single", wanted=8, seed=annotator))
        for condition in CONDITIONS:
            counts = [c.ratings for c in candidates if c.condition == condition]
            assert max(counts) - min(counts) <= 1


def test_plans_are_deterministic_by_seed_and_independent_of_input_order():
    candidates = study(40, 3)
    shuffled = random.Random(9).sample(candidates, len(candidates))
    attention = AttentionChecks(positions=(2, 6))

    first = plan_assignment(candidates, mode="single", wanted=8, seed=42, attention=attention)
    again = plan_assignment(shuffled, mode="single", wanted=8, seed=42, attention=attention)
    others = [plan_assignment(candidates, mode="single", wanted=8, seed=s, attention=attention) for s in range(5)]

    assert first.screens == again.screens
    assert any(other.screens != first.screens for other in others)


def test_pair_mode_shows_two_conditions_of_one_item_with_balanced_pairs():
    plan = plan_assignment(study(30, 3), mode="pair", wanted=12, seed=7)

    assert plan.complete and plan.block_size == 6 and plan.blocks_planned == 2
    explanations = by_id(study(30, 3))
    for screen in plan.rating_screens:
        assert screen.kind == "pair"
        first, second = (explanations[eid] for eid in screen.explanation_ids)
        assert first.item_id == second.item_id == screen.item_id
        assert (first.condition, second.condition) == screen.conditions
        assert CONDITIONS.index(first.condition) < CONDITIONS.index(second.condition)
        left, right = screen.left_to_right
        assert left == (second if screen.left_right_swapped else first).explanation_id
        assert {left, right} == set(screen.explanation_ids)
    for block in range(2):
        pairs = [frozenset(s.conditions) for s in plan.rating_screens if s.block == block]
        assert len(set(pairs)) == 6
    assert len({s.item_id for s in plan.rating_screens}) == 12


def test_pair_mode_counterbalances_left_and_right():
    plan = plan_assignment(study(30, 3), mode="pair", wanted=12, seed=11)
    # Each condition pair appears twice: once in each left/right order.
    swaps_per_pair = Counter(frozenset(s.conditions) for s in plan.rating_screens if s.left_right_swapped)
    assert swaps_per_pair == dict.fromkeys(swaps_per_pair, 1) and len(swaps_per_pair) == 6
    # With one appearance per pair the side is random: across annotators both sides occur.
    single_block = [plan_assignment(study(10, 3), mode="pair", wanted=6, seed=s) for s in range(6)]
    sides = {s.left_right_swapped for p in single_block for s in p.rating_screens}
    assert sides == {True, False}


def test_pair_mode_targets_hold_across_fifty_sequential_annotators():
    candidates = study(12, 2)
    for annotator in range(50):
        plan = plan_assignment(candidates, mode="pair", wanted=6, seed=annotator)
        candidates = reserve(candidates, plan)
        assert max(c.ratings for c in candidates) <= 2
    assert all(c.ratings == 2 for c in candidates)


def test_attention_checks_sit_at_their_positions():
    attention = AttentionChecks(positions=(1, 5, 5, 50), scale_size=7)
    plan = plan_assignment(study(10, 3), mode="single", wanted=8, seed=2, attention=attention)

    assert [s.position for s in plan.screens] == list(range(1, 12))
    # Duplicates collapse; a position past the end of the plan lands last.
    assert [s.position for s in plan.attention_screens] == [1, 5, 11]
    assert [s.kind for s in plan.screens].count("rate") == 8
    for check in plan.attention_screens:
        assert 1 <= check.expected_value <= 7
        assert check.explanation_ids == ()
    values = {
        s.expected_value
        for seed in range(20)
        for s in plan_assignment(study(10, 3), mode="single", wanted=4, seed=seed, attention=attention).screens
        if s.kind == "attention"
    }
    assert len(values) > 1


def test_no_attention_checks_without_anything_to_rate():
    plan = plan_assignment(study(2, 0), mode="single", wanted=4, seed=0, attention=AttentionChecks((1,)))
    assert plan.screens == []
    assert "reached its target" in plan.reason


def test_wanted_not_a_whole_number_of_blocks_plans_whole_blocks_and_says_so():
    plan = plan_assignment(study(20, 3), mode="single", wanted=10, seed=0)
    assert len(plan.explanation_ids) == 8
    assert "planned whole blocks only" in plan.reason
    assert not plan.complete


def test_shortage_names_the_scarce_condition():
    ratings = {("MT:Unrevised", item): 3 for item in range(1, 10)}
    plan = plan_assignment(study(10, 3, ratings), mode="single", wanted=8, seed=0)
    assert plan.blocks_planned == 1
    assert "MT:Unrevised has 1 explanations under target" in plan.reason


def test_a_full_condition_still_counts_toward_the_block():
    ratings = {("MT:Unrevised", item): 3 for item in range(10)}
    plan = plan_assignment(study(10, 3, ratings), mode="single", wanted=4, seed=0)
    assert plan.screens == [] and plan.block_size == 4


def test_pair_mode_needs_two_conditions():
    candidates = [Candidate(1, 1, "MT:Unrevised", 0, 3)]
    plan = plan_assignment(candidates, mode="pair", wanted=1, seed=0)
    assert plan.screens == [] and "at least two conditions" in plan.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "triple", "wanted": 4}, "mode"),
        ({"mode": "single", "wanted": -1}, "at least 0"),
        ({"mode": "single", "wanted": 4, "attention": AttentionChecks(positions=(0,))}, "screen numbers from 1"),
        ({"mode": "single", "wanted": 4, "attention": AttentionChecks(scale_size=1)}, "scale"),
        ({"mode": "single", "wanted": 4, "conditions": ["MT:Unrevised"]}, "outside the study"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_assignment(study(4, 3), seed=0, **kwargs)


def test_repeated_explanation_ids_are_refused():
    twice = [Candidate(1, 1, "MT:Unrevised", 0, 3), Candidate(1, 2, "CF:Unrevised", 0, 3)]
    with pytest.raises(ValueError, match="repeat"):
        plan_assignment(twice, mode="single", wanted=2, seed=0)


def test_import_needs_no_django():
    code = "import sys, annotations.assignment; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
