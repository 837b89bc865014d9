from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("modeling", "0005_lifecycle"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="stage",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
