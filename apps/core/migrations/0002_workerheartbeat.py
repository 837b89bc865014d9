from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("core", "0001_pgvector")]

    operations = [
        migrations.CreateModel(
            name="WorkerHeartbeat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("queue", models.CharField(max_length=64, unique=True)),
                ("token", models.CharField(max_length=64)),
                ("hostname", models.CharField(max_length=255)),
                ("seen_at", models.DateTimeField()),
            ],
        ),
    ]
