"""The typed form that creates a student run: one validated field per training option, the core's defaults shown."""

from __future__ import annotations

import dataclasses
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from distillation.ml.training import PRECISIONS, TrainingConfig
from distillation.models import StudentRun, TeacherRun
from distillation.services.students import TRAINING_OPTIONS, default_teacher_run, student_run_create

# Training options as typed fields; an option the training service does not accept is not shown.
_OPTION_FIELDS: dict[str, tuple[str, type[forms.Field], dict[str, Any]]] = {
    "max_steps": ("steps", forms.IntegerField, {"min_value": 1}),
    "batch_size": ("batch size", forms.IntegerField, {"min_value": 1}),
    "learning_rate": ("learning rate", forms.FloatField, {"min_value": 1e-8, "max_value": 1.0}),
    "max_input_tokens": ("input length (tokens)", forms.IntegerField, {"min_value": 8, "max_value": 4096}),
    "max_target_tokens": ("target length (tokens)", forms.IntegerField, {"min_value": 8, "max_value": 4096}),
    "precision": ("precision", forms.ChoiceField, {}),
    "checkpoint_every": ("checkpoint every (steps)", forms.IntegerField, {"min_value": 1}),
    "split_seed": ("validation split seed", forms.IntegerField, {"min_value": 0}),
    "eval_every": ("evaluate every (steps, 0: never)", forms.IntegerField, {"min_value": 0}),
}


def training_defaults() -> dict[str, Any]:
    """The training core's defaults (importing it loads no torch)."""

    return {f.name: f.default for f in dataclasses.fields(TrainingConfig) if f.default is not dataclasses.MISSING}


def option_names() -> list[str]:
    return [name for name in _OPTION_FIELDS if name in TRAINING_OPTIONS]


class StudentRunCreateForm(forms.ModelForm):
    """Creates a run through `student_run_create`; hyperparameters are typed fields, never free JSON."""

    train_limit = forms.IntegerField(
        required=False, min_value=1, label="only the first N training questions", help_text="Blank: all of them."
    )

    class Meta:
        model = StudentRun
        fields = [
            "name",
            "base_checkpoint",
            "model_size",
            "method",
            "training_data",
            "teacher_run",
            "alpha",
            "beta",
            "gamma",
            "seed",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["teacher_run"].queryset = TeacherRun.objects.select_related("teacher", "dataset")
        self.fields["teacher_run"].required = True
        self.fields["teacher_run"].initial = default_teacher_run()
        self.fields["teacher_run"].help_text = "Preselected: the newest teacher run over the training split."
        self.fields["base_checkpoint"].initial = "tiny"
        self.fields["model_size"].help_text = "Blank: filled in from the checkpoint where it is known (tiny)."
        for weight in ("alpha", "beta", "gamma"):
            self.fields[weight].min_value = 0.0
            self.fields[weight].max_value = 1.0
            self.fields[weight].widget.attrs.update({"min": 0, "max": 1, "step": "any"})

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for weight in ("alpha", "beta", "gamma"):
            value = cleaned.get(weight)
            if value is not None and not 0.0 <= value <= 1.0:
                self.add_error(weight, "A loss weight lies between 0 and 1.")
        if not self.errors:
            try:
                self.training_config()
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"The training core refuses these settings: {exc}") from exc
        return cleaned

    def hyperparameters(self) -> dict[str, Any]:
        values = {name: self.cleaned_data[name] for name in option_names()}
        if self.cleaned_data.get("train_limit"):
            values["train_limit"] = self.cleaned_data["train_limit"]
        return values

    def training_config(self) -> TrainingConfig:
        options = {k: v for k, v in self.hyperparameters().items() if k != "train_limit"}
        data = self.cleaned_data
        return TrainingConfig(
            student=data["base_checkpoint"],
            method=data["method"],
            alpha=data["alpha"],
            beta=data["beta"],
            gamma=data["gamma"],
            seed=data["seed"],
            **options,
        )

    def save(self, commit: bool = True) -> StudentRun:
        data = self.cleaned_data
        self.instance = student_run_create(
            name=data.get("name", ""),
            base_checkpoint=data["base_checkpoint"],
            method=data["method"],
            training_data=data["training_data"],
            seed=data["seed"],
            alpha=data["alpha"],
            beta=data["beta"],
            gamma=data["gamma"],
            hyperparameters=self.hyperparameters(),
            teacher_run=data["teacher_run"],
            model_size=data.get("model_size", ""),
        )
        return self.instance

    def save_m2m(self) -> None:  # the admin calls it after save(commit=False); a run has no many-to-many fields
        return None


class TrainLongerForm(forms.Form):
    """The step count to train a finished run on to: more than it has trained."""

    def __init__(self, *args, trained_steps: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["max_steps"] = forms.IntegerField(
            label="train to step",
            min_value=trained_steps + 1,
            initial=2 * trained_steps if trained_steps else None,
            help_text=(
                f"The run has trained {trained_steps} steps. It goes on from its last weights, with the learning "
                "rate re-planned over the new total, and is evaluated again when it ends."
            ),
        )


def _add_option_fields(form_class: type[forms.ModelForm]) -> None:
    """One typed field per training option, with the core's default as initial value and help text; placed
    after the run's identity and before the loss weights (the admin lays fields out in this order)."""
    defaults = training_defaults()
    fields = dict(form_class.base_fields)
    options = {}
    for name in option_names():
        label, field_class, extra = _OPTION_FIELDS[name]
        if name == "precision":
            extra = {"choices": [(p, p) for p in PRECISIONS]}
        default = defaults.get(name)
        options[name] = field_class(label=label, initial=default, help_text=f"Default: {default}.", **extra)
    identity = ["name", "base_checkpoint", "model_size", "method", "training_data", "teacher_run"]
    order = [*identity, *options, "train_limit", "alpha", "beta", "gamma", "seed"]
    merged = {**fields, **options}
    form_class.base_fields = {name: merged[name] for name in order}
    form_class.declared_fields = {**form_class.declared_fields, **options}


_add_option_fields(StudentRunCreateForm)
