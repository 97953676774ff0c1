"""Predictions in versioned sets per run; existing predictions become set 1 of their run."""

import django.db.models.deletion
from django.db import migrations, models


def _prompt_version(teacher_run) -> str:
    if teacher_run is None:
        return ""
    config = teacher_run.prompt_config or {}
    versions = config.get("versions") or {}
    if versions:
        return ";".join(f"{stage}={version}" for stage, version in sorted(versions.items()))
    return str(config.get("prompt_version", ""))


def one_set_per_run(apps, schema_editor):
    """Before sets, a run held one batch of predictions (each new one replaced it): that batch is set 1."""
    StudentRun = apps.get_model("distillation", "StudentRun")
    PredictionSet = apps.get_model("distillation", "PredictionSet")
    Prediction = apps.get_model("distillation", "Prediction")
    run_ids = Prediction.objects.values_list("student_run_id", flat=True).distinct()
    for run in StudentRun.objects.filter(pk__in=run_ids).select_related("teacher_run"):
        metrics = run.metrics or {}
        steps = metrics.get("steps")
        prediction_set = PredictionSet.objects.create(
            run=run,
            number=1,
            kind="evaluation",
            checkpoint_path=run.checkpoint_dir,
            checkpoint_step=steps if isinstance(steps, int) and steps >= 0 else None,
            split=metrics.get("eval_split", "") if metrics.get("eval_split") in ("train", "validation", "test") else "",
            task_format="tasks/v1",
            prompt_version=_prompt_version(run.teacher_run),
        )
        Prediction.objects.filter(student_run=run).update(prediction_set=prediction_set)


class Migration(migrations.Migration):

    dependencies = [
        ('distillation', '0002_prediction_choice_correct'),
    ]

    operations = [
        migrations.CreateModel(
            name='PredictionSet',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField(help_text='1, 2, ... within the run, in order of creation.')),
                ('kind', models.CharField(choices=[('evaluation', 'evaluation'), ('generation', 'generation of explanations')], max_length=16)),
                ('checkpoint_path', models.CharField(blank=True, help_text='The model folder that was run.', max_length=500)),
                ('checkpoint_step', models.PositiveIntegerField(blank=True, help_text='Training steps behind it.', null=True)),
                ('split', models.CharField(blank=True, choices=[('train', 'train'), ('validation', 'validation'), ('test', 'test')], max_length=16)),
                ('task_format', models.CharField(blank=True, help_text="Version of the student's input format.", max_length=64)),
                ('prompt_version', models.CharField(blank=True, help_text='Teacher prompt templates behind the training data.', max_length=200)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['run', '-number'],
            },
        ),
        migrations.AlterModelOptions(
            name='prediction',
            options={'ordering': ['prediction_set', 'question_id']},
        ),
        migrations.RemoveConstraint(
            model_name='prediction',
            name='prediction_unique_per_question',
        ),
        migrations.AddField(
            model_name='predictionset',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='prediction_sets', to='distillation.studentrun'),
        ),
        migrations.AddField(
            model_name='prediction',
            name='prediction_set',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='predictions', to='distillation.predictionset'),
        ),
        migrations.RunPython(one_set_per_run, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='prediction',
            name='prediction_set',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='predictions', to='distillation.predictionset'),
        ),
        migrations.AddConstraint(
            model_name='prediction',
            constraint=models.UniqueConstraint(fields=('prediction_set', 'question'), name='prediction_unique_per_set_question'),
        ),
        migrations.AddConstraint(
            model_name='predictionset',
            constraint=models.UniqueConstraint(fields=('run', 'number'), name='prediction_set_unique_number'),
        ),
    ]
