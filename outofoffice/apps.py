from django.apps import AppConfig


class OutofofficeConfig(AppConfig):
    name = "outofoffice"
