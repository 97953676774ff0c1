"""Datasets, teacher outputs, student runs and their predictions."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class Dataset(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="e.g. cqa")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Split(models.TextChoices):
    TRAIN = "train", "train"
    VALIDATION = "validation", "validation"
    TEST = "test", "test"


class Question(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="questions")
    split = models.CharField(max_length=16, choices=Split.choices, db_index=True)
    source_id = models.CharField(max_length=128, help_text="The id in the source dataset.")
    question = models.TextField()
    choices = models.JSONField(help_text="The answer choices, in order, as strings.")
    answer = models.TextField(help_text="The text of the correct choice.")
    answer_index = models.PositiveSmallIntegerField()
    extra = models.JSONField(default=dict, blank=True, help_text="Other fields of the source row.")

    class Meta:
        ordering = ["dataset", "split", "id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "source_id"], name="question_unique_source_id"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}: {self.question[:60]}"

    def clean(self) -> None:
        if not isinstance(self.choices, list) or len(self.choices) < 2:
            raise ValidationError({"choices": "A question needs a list of at least two choices."})
        if self.answer not in self.choices:
            raise ValidationError({"answer": "The answer must be one of the choices."})
        if self.answer_index != self.choices.index(self.answer):
            raise ValidationError({"answer_index": "answer_index does not point at the answer."})

    @property
    def choice_letters(self) -> str:
        return "abcdefghij"[: len(self.choices)]


class Teacher(models.Model):
    class Backend(models.TextChoices):
        HF = "hf", "Hugging Face causal LM"
        OPENAI = "openai", "OpenAI-compatible server"
        REPLAY = "replay", "replay of a file"
        TINY = "tiny", "tiny random model"
        IMPORT = "import", "imported outputs"

    name = models.CharField(max_length=200, unique=True, help_text="e.g. llama2-13b")
    backend = models.CharField(max_length=16, choices=Backend.choices)
    model_id = models.CharField(max_length=500, blank=True, help_text="Path, hub id, served model or file.")
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeacherOutputKind(models.TextChoices):
    RATIONALE = "rationale", "rationale"
    NEGATIVE_RATIONALE = "negative_rationale", "negative rationale"
    CRITIQUE = "critique", "critique"
    REVISION = "revision", "revision"
    COUNTERFACTUAL = "counterfactual", "counterfactual rationale"


class TeacherRun(models.Model):
    """One generation (or import) by one teacher with one prompt configuration: resuming continues it."""

    teacher = models.ForeignKey(Teacher, on_delete=models.PROTECT, related_name="runs")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="teacher_runs")
    split = models.CharField(max_length=16, choices=Split.choices, blank=True)
    stages = models.JSONField(default=list, blank=True)
    prompt_config = models.JSONField(
        default=dict, blank=True, help_text="Prompt versions, few-shot file, seed, decoding settings."
    )
    source_file = models.CharField(max_length=500, blank=True, help_text="For imports: the file read.")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.teacher} on {self.dataset}/{self.split or 'all'} #{self.pk}"


class TeacherOutput(models.Model):
    run = models.ForeignKey(TeacherRun, on_delete=models.CASCADE, related_name="outputs")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="teacher_outputs")
    kind = models.CharField(max_length=24, choices=TeacherOutputKind.choices, db_index=True)
    choice_index = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="For counterfactual rationales: the choice argued for."
    )
    text = models.TextField(blank=True)
    prompt = models.TextField(blank=True, help_text="The exact prompt text, when generated here.")
    prompt_version = models.CharField(max_length=64, help_text="Template version, e.g. rationale/v1 or import.")
    truncated = models.BooleanField(default=False, help_text="Hit the token limit or ends mid-sentence.")
    empty = models.BooleanField(default=False)
    n_tokens = models.PositiveIntegerField(null=True, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["question_id", "kind", "choice_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "question", "kind"],
                condition=models.Q(choice_index__isnull=True),
                name="teacher_output_unique_per_stage",
            ),
            models.UniqueConstraint(
                fields=["run", "question", "kind", "choice_index"],
                condition=models.Q(choice_index__isnull=False),
                name="teacher_output_unique_per_choice",
            ),
            models.CheckConstraint(
                condition=models.Q(kind=TeacherOutputKind.COUNTERFACTUAL, choice_index__isnull=False)
                | (~models.Q(kind=TeacherOutputKind.COUNTERFACTUAL) & models.Q(choice_index__isnull=True)),
                name="teacher_output_choice_only_for_counterfactuals",
            ),
        ]

    def __str__(self) -> str:
        suffix = f"[{self.choice_index}]" if self.choice_index is not None else ""
        return f"{self.kind}{suffix} for {self.question.source_id}"


class StudentMethod(models.TextChoices):
    MT = "mt", "MT (multitask)"
    CF = "cf", "CF (counterfactual)"
    MTCF = "mtcf", "MT+CF"


class TrainingData(models.TextChoices):
    UNREVISED = "unrevised", "unrevised (few-shot rationales)"
    REVISED = "revised", "revised (critique-revised)"


METHOD_LABELS = {StudentMethod.MT: "MT", StudentMethod.CF: "CF", StudentMethod.MTCF: "MT+CF"}


class StudentRun(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", "created"
        TRAINING = "training", "training"
        TRAINED = "trained", "trained"
        EVALUATED = "evaluated", "evaluated"
        FAILED = "failed", "failed"

    class Architecture(models.TextChoices):
        SEQ2SEQ = "seq2seq", "encoder-decoder"
        CAUSAL = "causal", "decoder-only"

    name = models.CharField(max_length=200, blank=True)
    base_checkpoint = models.CharField(max_length=500, help_text="Path, hub id, or tiny / tiny-causal.")
    architecture = models.CharField(max_length=16, choices=Architecture.choices, blank=True)
    model_size = models.CharField(max_length=32, blank=True, help_text="A label such as 220M or 770M.")
    method = models.CharField(max_length=8, choices=StudentMethod.choices)
    training_data = models.CharField(max_length=16, choices=TrainingData.choices)
    teacher_run = models.ForeignKey(
        TeacherRun, null=True, blank=True, on_delete=models.PROTECT, related_name="student_runs"
    )
    alpha = models.FloatField(default=0.5)
    beta = models.FloatField(default=0.5)
    gamma = models.FloatField(default=0.5)
    seed = models.IntegerField(default=0)
    hyperparameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED, db_index=True)
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(alpha__gte=0, alpha__lte=1, beta__gte=0, beta__lte=1, gamma__gte=0, gamma__lte=1),
                name="student_run_weights_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.condition_label} {self.base_checkpoint} seed {self.seed}"

    @property
    def condition_label(self) -> str:
        """The paper's label, e.g. MT+CF:Revised."""
        return f"{METHOD_LABELS[StudentMethod(self.method)]}:{self.training_data.capitalize()}"

    @property
    def accuracy(self) -> float | None:
        """Exact-match accuracy on the evaluation split (the paper's measure)."""
        return self.metrics.get("accuracy")


class PredictionSet(models.Model):
    """One evaluation or generation of a run: its predictions are appended as a set and never rewritten,
    so every explanation and rating keeps the model state and prompt format that wrote its text."""

    class Kind(models.TextChoices):
        EVALUATION = "evaluation", "evaluation"
        GENERATION = "generation", "generation of explanations"

    run = models.ForeignKey(StudentRun, on_delete=models.CASCADE, related_name="prediction_sets")
    number = models.PositiveIntegerField(help_text="1, 2, ... within the run, in order of creation.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    checkpoint_path = models.CharField(max_length=500, blank=True, help_text="The model folder that was run.")
    checkpoint_step = models.PositiveIntegerField(null=True, blank=True, help_text="Training steps behind it.")
    split = models.CharField(max_length=16, choices=Split.choices, blank=True)
    task_format = models.CharField(max_length=64, blank=True, help_text="Version of the student's input format.")
    prompt_version = models.CharField(
        max_length=200, blank=True, help_text="Teacher prompt templates behind the training data."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "-number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="prediction_set_unique_number")]

    def __str__(self) -> str:
        return f"run {self.run_id} set {self.number} ({self.kind})"

    @property
    def checkpoint_label(self) -> str:
        step = f" step {self.checkpoint_step}" if self.checkpoint_step is not None else ""
        return f"{self.checkpoint_path}{step}"


class Prediction(models.Model):
    class ParseStatus(models.TextChoices):
        EXACT = "exact", "exact choice text"
        LETTER = "letter", "choice letter"
        SIMILAR = "similar", "nearest choice"
        UNPARSEABLE = "unparseable", "unparseable"

    student_run = models.ForeignKey(StudentRun, on_delete=models.CASCADE, related_name="predictions")
    prediction_set = models.ForeignKey(PredictionSet, on_delete=models.CASCADE, related_name="predictions")
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="predictions")
    raw_answer = models.TextField(blank=True, help_text="The generated answer text, as produced.")
    predicted_answer = models.TextField(blank=True)
    parsed_choice = models.PositiveSmallIntegerField(null=True, blank=True)
    parse_status = models.CharField(max_length=16, choices=ParseStatus.choices)
    is_correct = models.BooleanField(
        default=False, help_text="Exact match: the generated answer text is the correct choice's text (the accuracy)."
    )
    choice_correct = models.BooleanField(
        default=False,
        help_text="The choice the lenient parser picked (letters and similar text accepted) is correct; a diagnostic.",
    )
    explanation = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prediction_set", "question_id"]
        constraints = [
            models.UniqueConstraint(fields=["prediction_set", "question"], name="prediction_unique_per_set_question"),
        ]

    def __str__(self) -> str:
        return f"{self.student_run_id} on {self.question.source_id}"
