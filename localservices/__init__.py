"""Private instances of slapd, Redis and Postfix on loopback, for the demo and the tests.

Every service lives under one state directory and listens on ports given by the
environment (the same MAILADMIN_* variables the Django settings read), so a demo and
a test run can live side by side. Nothing system-wide is started or changed.
"""
