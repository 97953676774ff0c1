"""Admin for datasets, questions, teachers and their outputs, student runs and predictions."""

from __future__ import annotations

from django.contrib import admin, messages

from distillation.models import Dataset, Prediction, Question, StudentRun, Teacher, TeacherOutput, TeacherRun
from distillation.services.students import student_training_enqueue
from evalsite.adminlinks import jobs_started_message
from evalsite.jobs import QueueUnavailable


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["source_id", "short_question", "answer", "split", "dataset"]
    list_filter = ["dataset", "split"]
    search_fields = ["source_id", "question", "answer"]
    list_select_related = ["dataset"]

    @admin.display(description="question")
    def short_question(self, question: Question) -> str:
        return question.question[:90]


@admin.register(Teacher)
class TeacherAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "model_id", "created_at"]
    list_filter = ["backend"]
    search_fields = ["name", "model_id"]


@admin.register(TeacherRun)
class TeacherRunAdmin(admin.ModelAdmin):
    list_display = ["id", "teacher", "dataset", "split", "source_file", "created_at"]
    list_filter = ["teacher", "dataset", "split"]
    search_fields = ["teacher__name", "source_file", "notes"]
    list_select_related = ["teacher", "dataset"]


@admin.register(TeacherOutput)
class TeacherOutputAdmin(admin.ModelAdmin):
    list_display = ["question", "kind", "choice_index", "short_text", "prompt_version", "truncated", "empty"]
    list_filter = ["kind", "truncated", "empty", "prompt_version", "run__teacher"]
    search_fields = ["question__source_id", "text"]
    list_select_related = ["question", "run"]
    raw_id_fields = ["question", "run"]

    @admin.display(description="text")
    def short_text(self, output: TeacherOutput) -> str:
        return output.text[:100]


@admin.register(StudentRun)
class StudentRunAdmin(admin.ModelAdmin):
    list_display = ["id", "__str__", "method", "training_data", "base_checkpoint", "seed", "status", "accuracy_display"]
    list_filter = ["status", "method", "training_data", "model_size", "architecture"]
    search_fields = ["name", "base_checkpoint", "checkpoint_dir"]
    raw_id_fields = ["teacher_run"]
    # The annotations app adds an action that regenerates a run's explanations in its studies.
    actions = ["train_or_resume"]

    @admin.action(description="Train (or resume from the last checkpoint) and evaluate", permissions=["change"])
    def train_or_resume(self, request, queryset):
        self.enqueue_for_each(request, queryset, student_training_enqueue)

    def enqueue_for_each(self, request, queryset, enqueue) -> None:
        """Start a job per selected run with a service ``enqueue(*, run, user)``; say which jobs started."""
        try:
            jobs = [enqueue(run=run, user=request.user) for run in queryset]
        except QueueUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, jobs_started_message(jobs), messages.SUCCESS)

    @admin.display(description="accuracy")
    def accuracy_display(self, run: StudentRun) -> str:
        accuracy = run.accuracy
        return "–" if accuracy is None else f"{100 * accuracy:.1f}%"


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["student_run", "question", "predicted_answer", "parse_status", "is_correct", "short_explanation"]
    list_filter = ["parse_status", "is_correct", "student_run"]
    search_fields = ["question__source_id", "explanation", "predicted_answer"]
    list_select_related = ["question", "student_run"]
    raw_id_fields = ["question", "student_run"]

    @admin.display(description="explanation")
    def short_explanation(self, prediction: Prediction) -> str:
        return prediction.explanation[:100]
