"""Job rows name their function by dotted path: follow the functions that moved, so old rows retry and dedupe."""

from django.db import migrations

MOVED = {
    "annotations.jobs.import_explanations": "annotations.jobs.studies.import_explanations",
    "annotations.jobs.simulate_annotators": "annotations.jobs.studies.simulate_annotators",
    "annotations.jobs_analysis.analyze_study": "annotations.jobs.analysis.analyze_study",
    "distillation.jobs.generate_explanations": "annotations.jobs.explanations.generate_explanations",
    "distillation.jobs.regenerate_explanations": "annotations.jobs.explanations.regenerate_explanations",
}


def _rename(apps, mapping: dict[str, str]) -> None:
    Job = apps.get_model("evalsite", "Job")
    for old, new in mapping.items():
        Job.objects.filter(function=old).update(function=new)


def forwards(apps, schema_editor) -> None:
    _rename(apps, MOVED)


def backwards(apps, schema_editor) -> None:
    _rename(apps, {new: old for old, new in MOVED.items()})


class Migration(migrations.Migration):
    dependencies = [("evalsite", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
