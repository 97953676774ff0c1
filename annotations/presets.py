"""Construct presets and study defaults: the default three constructs and the paper's five."""

from __future__ import annotations

FIVE_POINT_AGREEMENT = ["Strongly disagree", "Disagree", "Neither agree nor disagree", "Agree", "Strongly agree"]
SEVEN_POINT_AGREEMENT = [
    "Strongly disagree",
    "Disagree",
    "Somewhat disagree",
    "Neither agree nor disagree",
    "Somewhat agree",
    "Agree",
    "Strongly agree",
]

CONSTRUCT_WORDING = {
    "completeness": ("Completeness", "The explanation gives all the reasons needed to reach the answer."),
    "contrastiveness": (
        "Contrastiveness",
        "The explanation says why the chosen answer is better than the other choices.",
    ),
    "soundness": ("Soundness", "The reasoning in the explanation is correct and supports the answer."),
    "plausibility": ("Plausibility", "The explanation is convincing and believable."),
    "satisfaction": ("Satisfaction", "I am satisfied with this explanation."),
    "understandability": ("Understandability", "The explanation is easy to understand."),
}

PRESETS = {
    "default": ["completeness", "contrastiveness", "soundness"],
    "paper": ["completeness", "contrastiveness", "plausibility", "satisfaction", "understandability"],
}

DEFAULT_CONSENT = (
    "You are invited to take part in a research study on how people judge explanations written by "
    "language models. You will read short multiple-choice questions, each with an answer and an "
    "explanation, and rate the explanation. It takes about 10 minutes. Taking part is voluntary; you may "
    "stop at any time. We store your ratings and the answers to a short demographics form, without your "
    "name, and use them only for research."
)
DEFAULT_INSTRUCTIONS = (
    "Each screen shows a question, its answer choices and an explanation of the answer. Read the "
    "explanation, then rate it on every statement: 1 means you strongly disagree, the highest number that "
    "you strongly agree. Judge the explanation, not whether you would have picked the same answer. You "
    "can use the number keys to pick a point on the focused row and Enter to go on."
)


def anchors_for(scale_size: int) -> list[str]:
    if scale_size == 5:
        return list(FIVE_POINT_AGREEMENT)
    if scale_size == 7:
        return list(SEVEN_POINT_AGREEMENT)
    raise ValueError(f"scale size must be 5 or 7, not {scale_size}")


def construct_specs(names_or_specs: str | list, scale_size: int = 5) -> list[dict]:
    """Expand a preset name, or a list of names and full specs, into construct specs."""
    if isinstance(names_or_specs, str):
        if names_or_specs not in PRESETS:
            raise ValueError(f"unknown construct preset {names_or_specs!r}; choose one of {sorted(PRESETS)}")
        names_or_specs = PRESETS[names_or_specs]
    specs = []
    for position, entry in enumerate(names_or_specs):
        if isinstance(entry, str):
            if entry not in CONSTRUCT_WORDING:
                raise ValueError(f"unknown construct {entry!r}: give it as a mapping with a label and prompt")
            label, prompt = CONSTRUCT_WORDING[entry]
            entry = {"name": entry, "label": label, "prompt": prompt}
        size = int(entry.get("scale_size", scale_size))
        specs.append(
            {
                "name": entry["name"],
                "label": entry.get("label", entry["name"].capitalize()),
                "prompt": entry["prompt"],
                "scale_size": size,
                "anchors": entry.get("anchors") or anchors_for(size),
                "position": position,
            }
        )
    return specs
