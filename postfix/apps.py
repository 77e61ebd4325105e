from django.apps import AppConfig


class PostfixConfig(AppConfig):
    name = "postfix"
    verbose_name = "Postfix tables and configuration"
