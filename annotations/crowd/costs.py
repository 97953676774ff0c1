"""Cost of a crowd batch in Decimal money, to the cent; plain Python, no Django."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

# MTurk's commission (https://requester.mturk.com/pricing): 20% of the reward and of any bonus; HITs with 10 or
# more assignments pay a further 20% on the reward only (not on bonuses); Masters adds 5% on the reward; at least
# $0.01 per assignment or bonus.
MTURK_FEE_RATE = Decimal("0.20")
MTURK_TEN_OR_MORE_EXTRA_RATE = Decimal("0.20")
MTURK_FEE_RATE_TEN_OR_MORE = MTURK_FEE_RATE + MTURK_TEN_OR_MORE_EXTRA_RATE
MTURK_BONUS_FEE_RATE = MTURK_FEE_RATE
MTURK_MASTERS_FEE_RATE = Decimal("0.05")
MTURK_MIN_FEE = Decimal("0.01")
# Assignments per HIT that keep MTurk's fee on rewards at 20%.
MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE = 9
# Prolific's service fee on rewards and bonuses (VAT, where it applies, comes on top and is not included).
PROLIFIC_FEE_RATE = Decimal("0.333")


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def dollars(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def cents_from_amount(amount: str | Decimal) -> int:
    """'1.50' -> 150; refuses fractions of a cent rather than rounding someone's pay."""
    value = Decimal(str(amount))
    if value != value.quantize(CENT):
        raise ValueError(f"{amount} is not a whole number of cents")
    if value < 0:
        raise ValueError(f"{amount} is negative")
    return int(value * 100)


def mturk_fee_rate(*, assignments_per_hit: int, masters: bool = False) -> Decimal:
    """MTurk's fee on rewards (bonuses always pay MTURK_BONUS_FEE_RATE)."""
    rate = MTURK_FEE_RATE if assignments_per_hit <= MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE else MTURK_FEE_RATE_TEN_OR_MORE
    return rate + (MTURK_MASTERS_FEE_RATE if masters else Decimal(0))


def split_assignments(*, total: int, per_task: int = MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE) -> list[int]:
    """Spread ``total`` assignments over as few tasks as possible, each with at most ``per_task``."""
    if total < 1 or per_task < 1:
        raise ValueError("need at least one assignment and one per task")
    full, rest = divmod(total, per_task)
    return [per_task] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class CostBreakdown:
    reward: Decimal
    assignments: int
    fee_rate: Decimal
    bonus_fee_rate: Decimal
    rewards: Decimal
    reward_fees: Decimal
    bonuses: Decimal
    bonus_fees: Decimal

    @property
    def total(self) -> Decimal:
        return self.rewards + self.reward_fees + self.bonuses + self.bonus_fees

    def as_dict(self) -> dict[str, str | int]:
        return {
            "reward": str(self.reward),
            "assignments": self.assignments,
            "fee_rate": str(self.fee_rate),
            "bonus_fee_rate": str(self.bonus_fee_rate),
            "rewards": str(self.rewards),
            "reward_fees": str(self.reward_fees),
            "bonuses": str(self.bonuses),
            "bonus_fees": str(self.bonus_fees),
            "total": str(self.total),
        }


def batch_cost(
    *,
    reward_cents: int,
    assignments: int,
    fee_rate: Decimal,
    bonus_cents: int = 0,
    bonus_count: int = 0,
    min_fee: Decimal = Decimal(0),
    bonus_fee_rate: Decimal | None = None,
) -> CostBreakdown:
    """reward x assignments x (1 + fee) + bonuses x (1 + bonus fee), each part rounded to the cent once.

    ``bonus_fee_rate`` defaults to ``fee_rate``; MTurk's differs (its 10-or-more surcharge is on rewards only).

    ``min_fee`` is a per-assignment (and per-bonus) minimum commission, MTurk's $0.01; ``bonus_count`` is
    how many bonus payments make up ``bonus_cents`` (each carries the minimum fee).
    """
    fee_rate = Decimal(fee_rate)
    bonus_fee_rate = fee_rate if bonus_fee_rate is None else Decimal(bonus_fee_rate)
    reward = dollars(reward_cents)
    rewards = reward * assignments
    reward_fees = max(to_cents(rewards * fee_rate), min_fee * assignments)
    bonuses = dollars(bonus_cents)
    bonus_fees = max(to_cents(bonuses * bonus_fee_rate), min_fee * bonus_count) if bonus_cents else Decimal("0.00")
    return CostBreakdown(
        reward=reward,
        assignments=assignments,
        fee_rate=fee_rate,
        bonus_fee_rate=bonus_fee_rate,
        rewards=to_cents(rewards),
        reward_fees=to_cents(reward_fees),
        bonuses=bonuses,
        bonus_fees=to_cents(bonus_fees),
    )
