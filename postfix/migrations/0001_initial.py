"""The publication models move from aliases/ to postfix/: the tables stay as they are (state
only), and the outbox of keyed requests is new."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("aliases", "0005_mapgeneration_directory_fingerprint"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="MapGeneration",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("requested", models.BigIntegerField(default=0)),
                        ("requested_at", models.DateTimeField(blank=True, null=True)),
                        ("reason", models.CharField(blank=True, max_length=200)),
                        ("directory_fingerprint", models.CharField(blank=True, max_length=64)),
                    ],
                    options={"db_table": "aliases_mapgeneration"},
                ),
                migrations.CreateModel(
                    name="MapPublication",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("host", models.CharField(max_length=253, unique=True)),
                        ("published_generation", models.BigIntegerField(default=0)),
                        ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                        ("last_success_at", models.DateTimeField(blank=True, null=True)),
                        ("last_error", models.TextField(blank=True)),
                        ("last_error_at", models.DateTimeField(blank=True, null=True)),
                        ("publications", models.BigIntegerField(default=0)),
                        ("line_counts", models.JSONField(default=dict)),
                        ("last_reload_at", models.DateTimeField(blank=True, null=True)),
                        ("reload_pending", models.BooleanField(default=False)),
                    ],
                    options={"db_table": "aliases_mappublication", "ordering": ["host"]},
                ),
            ],
        ),
        migrations.CreateModel(
            name="PublicationRequest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("generation", models.BigIntegerField(unique=True)),
                ("keys", models.TextField(blank=True)),
                ("everything", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
