"""MapGeneration and MapPublication now belong to postfix/ (its 0001 takes them over, tables
unchanged): removed from this app's state only, so no row is lost."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("aliases", "0005_mapgeneration_directory_fingerprint"),
        ("postfix", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="MapGeneration"),
                migrations.DeleteModel(name="MapPublication"),
            ],
        ),
    ]
