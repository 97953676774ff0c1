"""Studies, their constructs, conditions, items and explanations; annotators, assignments and ratings."""

from __future__ import annotations

import secrets
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


def default_demographics_questions() -> list[dict]:
    return [
        {"name": "gender", "label": "Gender", "choices": ["Woman", "Man", "Non-binary", "Prefer not to say"]},
        {
            "name": "age",
            "label": "Age",
            "choices": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "Prefer not to say"],
        },
        {"name": "country", "label": "Country of residence", "choices": []},
        {
            "name": "education",
            "label": "Highest education completed",
            "choices": [
                "Secondary school",
                "Vocational training",
                "Bachelor's degree",
                "Master's degree",
                "Doctorate",
                "Other",
                "Prefer not to say",
            ],
        },
        {
            "name": "employment",
            "label": "Employment",
            "choices": [
                "Employed full-time",
                "Employed part-time",
                "Self-employed",
                "Student",
                "Not employed",
                "Retired",
                "Prefer not to say",
            ],
        },
    ]


class Study(models.Model):
    class Mode(models.TextChoices):
        SINGLE = "single", "single explanation per screen"
        PAIR = "pair", "two explanations side by side"

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        OPEN = "open", "open"
        PAUSED = "paused", "paused"
        CLOSED = "closed", "closed"

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SINGLE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT, db_index=True)
    explanations_per_annotator = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(1)], help_text="Screens per annotator (pairs in pair mode)."
    )
    ratings_per_explanation = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    attention_check_positions = models.JSONField(
        default=list, blank=True, help_text="1-based screen positions that carry an instructed-response row."
    )
    consent_text = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    demographics_questions = models.JSONField(default=default_demographics_questions, blank=True)
    show_correct_answer = models.BooleanField(default=True)
    ask_preference = models.BooleanField(default=True, help_text="Pair mode: ask which explanation is better.")
    time_limit_minutes = models.PositiveSmallIntegerField(null=True, blank=True)
    assignment_timeout_minutes = models.PositiveSmallIntegerField(
        default=60, help_text="Unfinished assignments older than this are released to others."
    )
    min_seconds_per_screen = models.FloatField(default=3.0, help_text="Faster screens are flagged as too fast.")
    completion_code = models.CharField(max_length=32, default=new_completion_code)
    failed_attention_code = models.CharField(max_length=32, default=new_completion_code)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.slug


class Construct(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="constructs")
    name = models.SlugField(max_length=64, help_text="e.g. completeness")
    label = models.CharField(max_length=120)
    prompt = models.TextField(help_text="The question the annotator reads.")
    scale_size = models.PositiveSmallIntegerField(choices=[(5, "5-point"), (7, "7-point")], default=5)
    anchors = models.JSONField(default=list, blank=True, help_text="A label per scale point, low to high.")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="construct_unique_name")]

    def __str__(self) -> str:
        return f"{self.study.slug}:{self.name}"

    def clean(self) -> None:
        if self.anchors and len(self.anchors) != self.scale_size:
            raise ValidationError({"anchors": f"Give one anchor label per scale point ({self.scale_size})."})


class Condition(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    label = models.CharField(max_length=120, help_text="e.g. MT+CF:Revised")
    description = models.TextField(blank=True)
    student_run = models.ForeignKey(
        "distillation.StudentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="conditions"
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "label"], name="condition_unique_label")]

    def __str__(self) -> str:
        return f"{self.study.slug}:{self.label}"


class Item(models.Model):
    """A question as shown in a study; explanations of it come from several conditions."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    question = models.ForeignKey(
        "distillation.Question", null=True, blank=True, on_delete=models.SET_NULL, related_name="study_items"
    )
    source_id = models.CharField(max_length=128)
    question_text = models.TextField()
    choices = models.JSONField(default=list, blank=True)
    answer = models.TextField(blank=True)

    class Meta:
        ordering = ["study", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "source_id"], name="item_unique_source_id")]

    def __str__(self) -> str:
        return f"{self.study.slug}:{self.source_id}"


# The order in which allocation reaches a study's items when their explanations are equally reserved: a
# multiplicative hash of the item's id (Lehmer's), so items imported together are not rated together, and the
# same order for every condition, so that pair mode finds both explanations of an item side by side.
ITEM_ORDER_MULTIPLIER = 48_271
ITEM_ORDER_MODULUS = 2_147_483_647


def item_order(item):
    """The item-order expression over an item id column; the index and allocation's SQL must spell it alike."""
    return (item * ITEM_ORDER_MULTIPLIER) % ITEM_ORDER_MODULUS


class Explanation(models.Model):
    class Source(models.TextChoices):
        STUDENT_RUN = "student_run", "student run"
        FILE = "file", "imported file"
        MANUAL = "manual", "typed in"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="explanations")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="explanations")
    text = models.TextField()
    version = models.PositiveSmallIntegerField(default=1)
    is_current = models.BooleanField(default=True, help_text="Shown to annotators from now on.")
    supersedes = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_by"
    )
    # PROTECT: the prediction names the run, checkpoint and prompt format that wrote this text; nothing may
    # delete it while the explanation exists (imported explanations have none).
    prediction = models.ForeignKey(
        "distillation.Prediction", null=True, blank=True, on_delete=models.PROTECT, related_name="explanations"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    provenance = models.JSONField(default=dict, blank=True, help_text="File, row, columns; or run and job.")
    predicted_answer = models.TextField(blank=True)
    reserved = models.PositiveIntegerField(
        default=0,
        help_text="Screens that hold this explanation and are not released (done or in progress); kept by the "
        "allocation services in the same transaction as the screens.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item_id", "condition_id", "-version"]
        indexes = [
            # Allocation's bounded question: one condition's current explanations, least reserved first, ties in
            # the study's item order; an index range read, so a large study costs what a small one does.
            models.Index(
                models.F("condition"),
                models.F("reserved"),
                item_order(models.F("item")),
                condition=models.Q(is_current=True),
                name="explanation_open_order",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["item", "condition", "version"], name="explanation_unique_version"),
            models.UniqueConstraint(
                fields=["item", "condition"],
                condition=models.Q(is_current=True),
                name="explanation_one_current_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.condition.label} on {self.item.source_id} v{self.version}"

    @property
    def length(self) -> int:
        return len(self.text)


class Annotator(models.Model):
    class Source(models.TextChoices):
        LINK = "link", "signed link"
        MTURK = "mturk", "Amazon Mechanical Turk"
        PROLIFIC = "prolific", "Prolific"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="annotators")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LINK)
    external_id = models.CharField(max_length=128, help_text="Worker id, Prolific PID or the link's label.")
    external_assignment_id = models.CharField(
        max_length=128, blank=True, help_text="MTurk assignmentId or Prolific SESSION_ID."
    )
    platform_data = models.JSONField(default=dict, blank=True, help_text="hitId, turkSubmitTo, STUDY_ID, ...")
    demographics = models.JSONField(default=dict, blank=True)
    assignment_seed = models.BigIntegerField(default=0)
    consented_at = models.DateTimeField(null=True, blank=True)
    demographics_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=32, blank=True)
    attention_failures = models.PositiveSmallIntegerField(default=0)
    flags = models.JSONField(default=dict, blank=True, help_text="too_fast, straight_lining, ...")

    class Meta:
        ordering = ["study", "started_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "source", "external_id"], name="annotator_unique_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class Assignment(models.Model):
    """One screen of an annotator's session: an explanation, a pair, or an attention check."""

    class Kind(models.TextChoices):
        RATE = "rate", "rate one explanation"
        PAIR = "pair", "rate a pair"
        ATTENTION = "attention", "attention check"

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "assigned"
        COMPLETED = "completed", "completed"
        RELEASED = "released", "released (timed out)"

    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="assignments")
    position = models.PositiveSmallIntegerField(help_text="1-based screen number.")
    block = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.RATE)
    explanation = models.ForeignKey(
        Explanation, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments"
    )
    second_explanation = models.ForeignKey(
        Explanation, null=True, blank=True, on_delete=models.PROTECT, related_name="second_assignments"
    )
    left_right_swapped = models.BooleanField(default=False, help_text="Pair mode: second shown on the left.")
    expected_value = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Attention check answer.")
    attention_value = models.PositiveSmallIntegerField(null=True, blank=True)
    preferred_explanation = models.ForeignKey(
        Explanation, null=True, blank=True, on_delete=models.PROTECT, related_name="preferred_in"
    )
    no_preference = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ASSIGNED, db_index=True)
    assigned_at = models.DateTimeField(auto_now_add=True)
    first_shown_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["annotator", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "position"],
                condition=~models.Q(status="released"),
                name="assignment_unique_position",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} #{self.position} ({self.kind})"


class Rating(models.Model):
    annotator = models.ForeignKey(Annotator, on_delete=models.CASCADE, related_name="ratings")
    explanation = models.ForeignKey(Explanation, on_delete=models.PROTECT, related_name="ratings")
    construct = models.ForeignKey(Construct, on_delete=models.PROTECT, related_name="ratings")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="ratings")
    value = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(7)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["annotator", "explanation", "construct"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "explanation", "construct"], name="rating_unique_per_construct"
            ),
            models.CheckConstraint(condition=models.Q(value__gte=1, value__lte=7), name="rating_value_on_a_scale"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} {self.construct.name}={self.value}"

    def clean(self) -> None:
        if self.construct_id and self.value is not None and not 1 <= self.value <= self.construct.scale_size:
            raise ValidationError({"value": f"Must be between 1 and {self.construct.scale_size}."})


class AnalysisReport(models.Model):
    """A stored analysis of a study; it is reused until the study gets new ratings."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="analysis_reports")
    reference = models.CharField(max_length=120, blank=True)
    ratings_fingerprint = models.CharField(max_length=64, help_text="Count and latest change of the ratings.")
    output_dir = models.CharField(max_length=500, blank=True)
    report = models.JSONField(null=True, blank=True)
    job = models.ForeignKey("evalsite.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"analysis of {self.study.slug} #{self.pk}"
