"""Explanations keep the prediction that wrote them: deleting it is refused."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0006_explanation_metrics'),
        ('distillation', '0003_prediction_sets'),
    ]

    operations = [
        migrations.AlterField(
            model_name='explanation',
            name='prediction',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='explanations', to='distillation.prediction'),
        ),
    ]
