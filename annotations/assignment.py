"""Plans which explanations an annotator rates, in what order, with attention checks: plain Python, no Django.

The caller passes candidate explanations with their rating counts (stored plus reserved): every explanation of
the study, or (as the site does) a bounded set of the least-rated open ones of each condition. It holds locks on
them while it plans and reserves what the plan names; because a plan names an explanation at most once and
only while it is under its target, targets are never overshot.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import defaultdict
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

Mode = Literal["single", "pair"]
ScreenKind = Literal["rate", "pair", "attention"]
MODES: tuple[Mode, ...] = ("single", "pair")


@dataclass(frozen=True)
class Candidate:
    """One explanation of the study; `ratings` counts stored ratings plus those reserved by open plans."""

    explanation_id: Hashable
    item_id: Hashable
    condition: str
    ratings: int
    target: int

    @property
    def is_open(self) -> bool:
        return self.ratings < self.target


@dataclass(frozen=True)
class AttentionChecks:
    """Instructed-response screens ("choose N on this row") at these 1-based screen numbers of the plan."""

    positions: tuple[int, ...] = ()
    scale_size: int = 5


@dataclass(frozen=True)
class PlannedScreen:
    """One screen, numbered from 1. A pair lists `explanation_ids` and `conditions` in the study's condition
    order; `left_right_swapped` means the second is shown on the left (see `left_to_right`). An attention
    screen carries only `expected_value`, the scale point it asks for."""

    position: int
    kind: ScreenKind
    explanation_ids: tuple[Hashable, ...] = ()
    item_id: Hashable | None = None
    conditions: tuple[str, ...] = ()
    block: int | None = None
    left_right_swapped: bool | None = None
    expected_value: int | None = None

    @property
    def left_to_right(self) -> tuple[Hashable, ...]:
        """The explanation ids in display order."""
        return self.explanation_ids[::-1] if self.left_right_swapped else self.explanation_ids


@dataclass
class AssignmentPlan:
    """The ordered screens of one annotator; `reason` is empty when the plan is what was asked for."""

    mode: Mode
    seed: int
    conditions: tuple[str, ...]
    block_size: int
    blocks_wanted: int
    blocks_planned: int
    screens: list[PlannedScreen] = field(default_factory=list)
    reason: str = ""

    @property
    def complete(self) -> bool:
        return not self.reason

    @property
    def explanation_ids(self) -> list[Hashable]:
        """Every explanation the plan shows, in screen order: what the caller reserves."""
        return [eid for screen in self.screens for eid in screen.explanation_ids]

    @property
    def rating_screens(self) -> list[PlannedScreen]:
        return [screen for screen in self.screens if screen.kind != "attention"]

    @property
    def attention_screens(self) -> list[PlannedScreen]:
        return [screen for screen in self.screens if screen.kind == "attention"]


# A unit is what one rating screen shows: one condition (single mode) or a pair of conditions (pair mode).
Unit = tuple[str, ...]


def plan_assignment(
    candidates: Sequence[Candidate],
    *,
    mode: Mode,
    wanted: int,
    seed: int,
    seen_item_ids: Collection[Hashable] = (),
    attention: AttentionChecks = AttentionChecks(),
    conditions: Sequence[str] | None = None,
) -> AssignmentPlan:
    """Plan `wanted` explanations (single mode) or pairs (pair mode) for one annotator.

    Screens come in blocks holding each condition once (single) or each pair of conditions once (pair),
    shuffled within the block; no item appears twice, nor any in `seen_item_ids`; the least-rated open
    explanations are taken first. `conditions` defaults to those of the candidates; pass the study's own
    when the candidates are a subset (a condition with no candidate must still count). Deterministic given
    `seed`.
    """
    _check_arguments(candidates, mode=mode, wanted=wanted, attention=attention)
    study_conditions = _study_conditions(candidates, conditions)
    units = _units(mode, study_conditions)
    plan = AssignmentPlan(
        mode=mode,
        seed=seed,
        conditions=study_conditions,
        block_size=len(units),
        blocks_wanted=wanted // len(units) if units else 0,
        blocks_planned=0,
    )
    if not units:
        plan.reason = (
            f"pair mode needs at least two conditions; the study has {len(study_conditions)}"
            if study_conditions
            else "no candidate explanations"
        )
        return plan

    rng = random.Random(seed)
    least_rated = _least_rated_open(candidates, seen_item_ids)
    demand = _demand(least_rated)
    options = {unit: _ranked_items(unit, least_rated, demand, seed) for unit in units}
    # Drawn before the search so the random stream does not depend on how many blocks fit.
    unit_orders = [rng.sample(units, len(units)) for _ in range(plan.blocks_wanted)]
    plan.blocks_planned, items = _largest_balanced_matching(options, unit_orders)
    rating_screens = _rating_screens(mode, unit_orders[: plan.blocks_planned], items, least_rated, rng)
    plan.screens = _insert_attention_checks(rating_screens, attention, rng) if rating_screens else []
    plan.reason = "; ".join(_shortfall_reasons(plan, wanted, candidates, options))
    return plan


def _study_conditions(candidates: Sequence[Candidate], conditions: Sequence[str] | None) -> tuple[str, ...]:
    present = {c.condition for c in candidates}
    study_conditions = tuple(conditions) if conditions is not None else tuple(sorted(present))
    if len(set(study_conditions)) != len(study_conditions):
        raise ValueError(f"conditions repeat: {list(study_conditions)}")
    unknown = sorted(present - set(study_conditions))
    if unknown:
        raise ValueError(f"candidates have conditions {unknown} outside the study's {list(study_conditions)}")
    return study_conditions


def _shortfall_reasons(
    plan: AssignmentPlan, wanted: int, candidates: Sequence[Candidate], options: dict[Unit, list[Hashable]]
) -> list[str]:
    reasons = []
    if wanted % plan.block_size:
        noun = "explanations" if plan.mode == "single" else "pairs"
        reasons.append(
            f"{wanted} {noun} asked, but a balanced block holds {plan.block_size} "
            f"({_block_description(plan.mode)}); planned whole blocks only"
        )
    if plan.blocks_planned < plan.blocks_wanted:
        if not any(candidate.is_open for candidate in candidates):
            reasons.append("every explanation has reached its target number of ratings")
        else:
            reasons.append(_shortage_reason(plan.mode, options, plan.blocks_planned, plan.blocks_wanted))
    return reasons


def _check_arguments(candidates: Sequence[Candidate], *, mode: str, wanted: int, attention: AttentionChecks) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if wanted < 0:
        raise ValueError(f"wanted must be at least 0, not {wanted}")
    if attention.scale_size < 2:
        raise ValueError(f"an attention check needs a scale of at least 2 points, not {attention.scale_size}")
    if any(position < 1 for position in attention.positions):
        raise ValueError(f"attention positions are screen numbers from 1: {attention.positions}")
    ids = [c.explanation_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("explanation ids repeat among the candidates")


def _units(mode: Mode, conditions: tuple[str, ...]) -> list[Unit]:
    if mode == "single":
        return [(condition,) for condition in conditions]
    return list(itertools.combinations(conditions, 2))


def _block_description(mode: Mode) -> str:
    return "one of each condition" if mode == "single" else "one of each pair of conditions"


def _least_rated_open(
    candidates: Sequence[Candidate], seen_item_ids: Collection[Hashable]
) -> dict[tuple[str, Hashable], Candidate]:
    """Per (condition, item), the open explanation with the fewest ratings, on items not seen yet."""
    seen = set(seen_item_ids)
    best: dict[tuple[str, Hashable], Candidate] = {}
    for candidate in candidates:
        if not candidate.is_open or candidate.item_id in seen:
            continue
        key = (candidate.condition, candidate.item_id)
        current = best.get(key)
        if current is None or _rating_rank(candidate) < _rating_rank(current):
            best[key] = candidate
    return best


def _rating_rank(candidate: Candidate) -> tuple[int, str]:
    # The id breaks ties only so that the choice does not depend on the order candidates arrive in.
    return candidate.ratings, str(candidate.explanation_id)


def _tiebreak(seed: int, unit: Unit, item: Hashable) -> int:
    """A seeded pseudo-random rank for an item, fixed whatever order the candidates arrive in."""
    digest = hashlib.blake2b(repr((seed, unit, item)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _demand(least_rated: dict[tuple[str, Hashable], Candidate]) -> dict[Hashable, int]:
    """Per item, how many conditions have their lowest rating count there."""
    lowest: dict[str, int] = {}
    for (condition, _), candidate in least_rated.items():
        lowest[condition] = min(lowest.get(condition, candidate.ratings), candidate.ratings)
    demand: dict[Hashable, int] = defaultdict(int)
    for (condition, item), candidate in least_rated.items():
        demand[item] += candidate.ratings == lowest[condition]
    return demand


def _ranked_items(
    unit: Unit, least_rated: dict[tuple[str, Hashable], Candidate], demand: dict[Hashable, int], seed: int
) -> list[Hashable]:
    """Items that can fill `unit`, least-rated first.

    Among equally rated items, those more conditions still need (see `_demand`) go first: using contested
    items while plans have room keeps the conditions' least-rated explanations from ending up on the same
    few items, where one annotator cannot take them all. Remaining ties go in seeded random order.
    """
    ratings_in_unit: dict[Hashable, list[int]] = defaultdict(list)
    for (condition, item), candidate in least_rated.items():
        if condition in unit:
            ratings_in_unit[item].append(candidate.ratings)
    usable = {item: counts for item, counts in ratings_in_unit.items() if len(counts) == len(unit)}
    return sorted(
        usable,
        key=lambda item: (sum(usable[item]), max(usable[item]), -demand[item], _tiebreak(seed, unit, item)),
    )


def _largest_balanced_matching(
    options: dict[Unit, list[Hashable]], unit_orders: list[list[Unit]]
) -> tuple[int, list[Hashable]]:
    """The most whole blocks whose screens all get distinct items, and those items in slot order.

    Each slot (a unit in a block) needs its own item: a bipartite matching, found by augmenting paths
    (Kuhn's algorithm) so that a greedy dead end never hides a feasible plan. Slots try their items in
    least-rated order and take a free one before displacing another slot.
    """
    distinct_items = len({item for items in options.values() for item in items})
    fewest_options = min(len(items) for items in options.values())
    blocks = min(len(unit_orders), fewest_options, distinct_items // len(options))
    while blocks > 0:
        slots = [unit for order in unit_orders[:blocks] for unit in order]
        items = _match_slots([options[unit] for unit in slots])
        if items is not None:
            return blocks, items
        blocks -= 1
    return 0, []


def _match_slots(slot_options: list[list[Hashable]]) -> list[Hashable] | None:
    owner: dict[Hashable, int] = {}
    assigned: list[Hashable | None] = [None] * len(slot_options)

    def augment(slot: int, visited: set[Hashable]) -> bool:
        for item in slot_options[slot]:
            if item in visited:
                continue
            visited.add(item)
            if item not in owner or augment(owner[item], visited):
                owner[item] = slot
                assigned[slot] = item
                return True
        return False

    for slot, items in enumerate(slot_options):
        free = next((item for item in items if item not in owner), None)
        if free is not None:
            owner[free] = slot
            assigned[slot] = free
        elif not augment(slot, set()):
            return None
    return assigned


def _shortage_reason(mode: Mode, options: dict[Unit, list[Hashable]], blocks: int, blocks_wanted: int) -> str:
    what = "explanations under target" if mode == "single" else "items with both explanations under target"
    scarce = [
        f"{' vs '.join(unit)} has {len(items)} {what}" for unit, items in options.items() if len(items) < blocks_wanted
    ]
    why = (
        "; ".join(scarce)
        if scarce
        else "the explanations still under target share items, and an annotator sees each item once"
    )
    return (
        f"only {blocks} of {blocks_wanted} balanced block(s) could be planned on items this annotator "
        f"has not seen: {why}"
    )


def _rating_screens(
    mode: Mode,
    unit_orders: list[list[Unit]],
    items: list[Hashable],
    least_rated: dict[tuple[str, Hashable], Candidate],
    rng: random.Random,
) -> list[PlannedScreen]:
    # Positions are set once the attention checks are in (`_insert_attention_checks`).
    swaps = _counterbalanced_swaps(unit_orders, rng) if mode == "pair" else {}
    item_of_slot = iter(items)
    screens = []
    for block, order in enumerate(unit_orders):
        filled = [(unit, next(item_of_slot)) for unit in order]
        # The matching gave earlier slots first pick; the display order is drawn afresh.
        rng.shuffle(filled)
        for unit, item in filled:
            if mode == "single":
                (condition,) = unit
                screens.append(
                    PlannedScreen(
                        position=-1,
                        kind="rate",
                        explanation_ids=(least_rated[(condition, item)].explanation_id,),
                        item_id=item,
                        conditions=unit,
                        block=block,
                    )
                )
            else:
                swapped = swaps[unit].pop()
                screens.append(
                    PlannedScreen(
                        position=-1,
                        kind="pair",
                        explanation_ids=tuple(least_rated[(c, item)].explanation_id for c in unit),
                        item_id=item,
                        conditions=unit,
                        block=block,
                        left_right_swapped=swapped,
                    )
                )
    return screens


def _counterbalanced_swaps(unit_orders: list[list[Unit]], rng: random.Random) -> dict[Unit, list[bool]]:
    """Per condition pair, half its screens swapped (a coin decides the odd one): each condition of a
    pair is on the left as often as on the right, in random order."""
    appearances: dict[Unit, int] = defaultdict(int)
    for order in unit_orders:
        for unit in order:
            appearances[unit] += 1
    swaps = {}
    for unit in sorted(appearances):
        count = appearances[unit]
        flags = [True] * (count // 2) + [False] * (count // 2)
        if count % 2:
            flags.append(rng.random() < 0.5)
        rng.shuffle(flags)
        swaps[unit] = flags
    return swaps


def _insert_attention_checks(
    screens: list[PlannedScreen], attention: AttentionChecks, rng: random.Random
) -> list[PlannedScreen]:
    """Insert checks at their screen numbers (one past the end of a short plan goes last, so no check is
    lost) and number every screen from 1."""
    out = list(screens)
    for position in sorted(set(attention.positions)):
        check = PlannedScreen(position=-1, kind="attention", expected_value=rng.randint(1, attention.scale_size))
        out.insert(min(position - 1, len(out)), check)
    return [replace(screen, position=position) for position, screen in enumerate(out, start=1)]
