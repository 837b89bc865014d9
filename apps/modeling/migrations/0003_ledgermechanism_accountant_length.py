"""Room for the accountant of the "factors" DP design: "GDP (analytic Gaussian, exact composition)"."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("modeling", "0002_rls_ledger_served_vectors")]

    operations = [
        migrations.AlterField(
            model_name="ledgermechanism",
            name="accountant",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
