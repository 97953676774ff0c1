"""Cost maths: reward x assignments x (1 + fee) plus bonuses, in Decimal cents; fee tiers; HIT splitting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from annotations.crowd.costs import batch_cost, cents_from_amount, mturk_fee_rate, split_assignments


def test_cost_is_reward_times_assignments_times_one_plus_fee_plus_bonuses():
    cost = batch_cost(reward_cents=150, assignments=10 * 9, fee_rate=Decimal("0.20"), bonus_cents=2000, bonus_count=40)
    assert cost.rewards == Decimal("135.00")
    assert cost.reward_fees == Decimal("27.00")
    assert cost.bonuses == Decimal("20.00")
    assert cost.bonus_fees == Decimal("4.00")
    assert cost.total == Decimal("1.50") * 90 * (1 + Decimal("0.20")) + Decimal("20.00") * (1 + Decimal("0.20"))
    assert cost.total == Decimal("186.00")


def test_cost_is_rounded_to_the_cent_once_not_per_assignment():
    cost = batch_cost(reward_cents=33, assignments=9, fee_rate=Decimal("0.333"))
    assert cost.rewards == Decimal("2.97")
    assert cost.reward_fees == Decimal("0.99")  # 2.97 * 0.333 = 0.98901
    assert cost.total == Decimal("3.96")
    assert cost.total.as_tuple().exponent == -2


def test_mturk_minimum_fee_of_a_cent_per_assignment():
    cost = batch_cost(reward_cents=1, assignments=9, fee_rate=Decimal("0.20"), min_fee=Decimal("0.01"))
    assert cost.reward_fees == Decimal("0.09")
    assert cost.total == Decimal("0.18")


def test_fee_tiers():
    assert mturk_fee_rate(assignments_per_hit=9) == Decimal("0.20")
    assert mturk_fee_rate(assignments_per_hit=10) == Decimal("0.40")
    assert mturk_fee_rate(assignments_per_hit=9, masters=True) == Decimal("0.25")


def test_split_keeps_each_hit_at_nine_or_fewer():
    assert split_assignments(total=20) == [9, 9, 2]
    assert split_assignments(total=9) == [9]
    assert max(split_assignments(total=100)) <= 9


def test_amounts_in_cents_refuse_fractions():
    assert cents_from_amount("1.50") == 150
    with pytest.raises(ValueError):
        cents_from_amount("1.505")


def test_mturk_charges_its_ten_or_more_surcharge_on_rewards_only():
    from annotations.crowd.selectors import cost_estimate

    # The case: 2 HITs x 10 assignments x $0.75 and one $1.00 bonus.
    cost = cost_estimate(
        platform="mturk",
        reward_cents=75,
        n_tasks=2,
        assignments_per_task=10,
        fee_rate=mturk_fee_rate(assignments_per_hit=10),
        planned_bonus_cents=100,
        planned_bonus_count=1,
    )
    assert cost.reward_fees == Decimal("15.00") * Decimal("0.40")
    assert cost.bonus_fee_rate == Decimal("0.20") and cost.bonus_fees == Decimal("0.20")
    assert cost.total == Decimal("22.20")
    prolific = cost_estimate(
        platform="prolific",
        reward_cents=75,
        n_tasks=1,
        assignments_per_task=20,
        fee_rate=Decimal("0.333"),
        planned_bonus_cents=100,
    )
    assert prolific.bonus_fee_rate == Decimal("0.333"), "Prolific's fee is the same on rewards and bonuses"
