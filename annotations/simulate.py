"""A generative model of Likert ratings with annotator, item and condition effects (plain Python).

Used to fill demo studies and to test the analysis on data with known structure: each rating is
round(base + condition effect + annotator leniency + item difficulty + noise), clipped to the scale.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RatingModel:
    base: float = 3.2
    annotator_sd: float = 0.5
    item_sd: float = 0.3
    noise_sd: float = 0.6
    # Conditions not named here get no effect; the paper's revised MT+CF explanations rated best.
    condition_effects: dict[str, float] = field(
        default_factory=lambda: {
            "CF:Unrevised": 0.0,
            "MT:Unrevised": 0.15,
            "MT+CF:Unrevised": 0.1,
            "MT+CF:Revised": 0.3,
        }
    )
    construct_offsets: dict[str, float] = field(default_factory=dict)


class RatingSimulator:
    """Draws stable per-annotator and per-item effects once, then ratings for any (annotator, item, condition)."""

    def __init__(self, model: RatingModel | None = None, seed: int = 0) -> None:
        self.model = model or RatingModel()
        self.rng = random.Random(seed)
        self._annotator_effects: dict[object, float] = {}
        self._item_effects: dict[object, float] = {}

    def _effect(self, table: dict[object, float], key: object, sd: float) -> float:
        if key not in table:
            table[key] = self.rng.gauss(0.0, sd)
        return table[key]

    def rating(self, *, annotator: object, item: object, condition: str, construct: str, scale_size: int) -> int:
        mean = (
            self.model.base
            + self.model.condition_effects.get(condition, 0.0)
            + self.model.construct_offsets.get(construct, 0.0)
            + self._effect(self._annotator_effects, annotator, self.model.annotator_sd)
            + self._effect(self._item_effects, item, self.model.item_sd)
        )
        value = round(mean + self.rng.gauss(0.0, self.model.noise_sd))
        return max(1, min(scale_size, value))

    def attention_answer(self, expected: int, scale_size: int, failure_rate: float = 0.05) -> int:
        if self.rng.random() >= failure_rate:
            return expected
        return self.rng.choice([v for v in range(1, scale_size + 1) if v != expected])

    def seconds_on_screen(self) -> float:
        return max(2.0, self.rng.lognormvariate(3.0, 0.4))
