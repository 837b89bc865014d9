from django.db import migrations, models


class Migration(migrations.Migration):
    """Keep a keyed digest of the typed username instead of the text (it may be a mistyped password)."""

    dependencies = [("webadmin", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="loginfailure", name="webadmin_loginfail_key"),
        migrations.RunSQL("DELETE FROM webadmin_loginfailure", migrations.RunSQL.noop),
        migrations.RenameField(model_name="loginfailure", old_name="username", new_name="username_digest"),
        migrations.AlterField(
            model_name="loginfailure", name="username_digest", field=models.CharField(max_length=64)
        ),
        migrations.AddIndex(
            model_name="loginfailure",
            index=models.Index(fields=["username_digest", "ip", "at"], name="webadmin_loginfail_key"),
        ),
    ]
