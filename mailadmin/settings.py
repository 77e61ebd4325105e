"""Settings for mailadmin, read from the environment (variables prefixed MAILADMIN_).

Defaults run the demo on one machine; README.md lists every setting; docs/deploy.md the production values.
"""

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(f"MAILADMIN_{name}", default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(f"MAILADMIN_{name}")
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"MAILADMIN_{name} must be an integer, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(f"MAILADMIN_{name}")
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"MAILADMIN_{name} must be a boolean, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(f"MAILADMIN_{name}")
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str) -> str:
    """A secret from MAILADMIN_<NAME>_FILE (preferred) or MAILADMIN_<NAME>."""
    path = os.environ.get(f"MAILADMIN_{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"MAILADMIN_{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return os.environ.get(f"MAILADMIN_{name}", default)


# Where the project-local services keep their data (demo: var/demo; tests: a temporary dir).
STATE_DIR = Path(env_str("STATE_DIR", str(BASE_DIR / "var" / "demo")))

# Off unless asked for: a production host that forgets the variable must not show tracebacks.
# The demo and the test runs (python -m localservices) switch it on themselves.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", "demo-only-secret-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("MAILADMIN_SECRET_KEY (or MAILADMIN_SECRET_KEY_FILE) must be set when DEBUG is off")
# Earlier keys, still accepted after a change of SECRET_KEY: sessions and the sealed TOTP secrets
# (mfa/sealing.py) stay readable until everyone has signed in again / the list is emptied.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "audit",
    "accounts",
    "aliases",
    "postfix",
    "outofoffice",
    "handover",
    "mfa",
    "notices",
    "limits",
    # Alias activity, sender blocks, leak alerts; the Postfix policy service (docs/policy.md).
    "activity",
    "policy",
    "api",
    "bulk",
]

MIDDLEWARE = [
    # Production hardening: the client's address as a trusted reverse proxy saw it.
    "mailadmin.security.client_address_from_proxy",
    "django.middleware.security.SecurityMiddleware",
    # Production hardening: Content-Security-Policy and Permissions-Policy on every response.
    "mailadmin.security.security_headers",
    # CORS on the extension calls of the alias API only (api/cors.py); before anything that could answer first.
    "api.cors.extension_cors",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Sessions follow the directory: entry gone, disabled, password or groups changed in LDAP.
    "accounts.session_check.follow_directory",
    # A second factor: asked after the password, and enrolment forced where the policy says so.
    "mfa.middleware.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Web UI: dates in the viewer's time zone (browser-provided `tz` cookie; see docs/web-interface.md).
    "mailadmin.timezones.TimezoneMiddleware",
    # Staff console: the project's own 404 page, never Django's technical one (DEBUG or not).
    "mailadmin.not_found.NotFoundMiddleware",
]

ROOT_URLCONF = "mailadmin.urls"
WSGI_APPLICATION = "mailadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.roles.role_context",
                "accounts.suspension.suspension_context",
            ],
            # Web UI: {% load navigation %} for the shared layout's links.
            "libraries": {"navigation": "mailadmin.navigation"},
            # Dates: |exact, |day and |relative in every template (mailadmin/dates.py).
            "builtins": ["mailadmin.dates"],
        },
    },
]

# SQLite by default; PostgreSQL by setting MAILADMIN_DATABASE_URL=postgresql://user:pass@host:port/name
DATABASE_URL = env_str("DATABASE_URL", "")


def _database(url: str) -> dict[str, object]:
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STATE_DIR / "mailadmin.sqlite3",
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                # WAL: readers and the one writer do not block each other, and a commit costs one
                # fsync (of the log) instead of several; as durable as the default journal. The
                # vacation responder relaxes its own reply-log commits (outofoffice/replies.py).
                "init_command": "PRAGMA journal_mode=WAL",
            },
        }
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"MAILADMIN_DATABASE_URL: unsupported scheme {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The locale of dates and times on pages, in forms, audit details and mails (mailadmin/dates.py):
# the default is a 24-hour English one ("7 Dec 2026, 09:00"; mailadmin/formats/en).
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en-gb")
FORMAT_MODULE_PATH = ["mailadmin.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(STATE_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
# How often a signed-in session is checked against LDAP again (entry, password, groups).
SESSION_RECHECK_SECONDS = env_int("SESSION_RECHECK_SECONDS", 60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Production hardening ------------------------------------------------------------------
# With DEBUG off these default to what `manage.py check --deploy` asks for; docs/deploy.md
# "Production deployment" lists the values. HTTPS only: plain HTTP is redirected, and browsers
# are told (HSTS) to use HTTPS for a year.
SECURE_SSL_REDIRECT = env_bool("SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Preload asks browsers to hard-code HTTPS for the whole domain, hard to undo: only the owner of
# the domain can decide that, so it is off (and check --deploy is not asked to nag) unless set.
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Addresses of reverse proxies whose X-Forwarded-For is believed (sign-in throttle, audit log).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# --- OpenLDAP -------------------------------------------------------------------------
LDAP_HOST = env_str("LDAP_HOST", "127.0.0.1")
LDAP_PORT = env_int("LDAP_PORT", 3389)
LDAP_URI = env_str("LDAP_URI", f"ldap://{LDAP_HOST}:{LDAP_PORT}")
LDAP_BASE_DN = env_str("LDAP_BASE_DN", "dc=example,dc=org")
LDAP_PEOPLE_DN = env_str("LDAP_PEOPLE_DN", f"ou=people,{LDAP_BASE_DN}")
LDAP_GROUPS_DN = env_str("LDAP_GROUPS_DN", f"ou=groups,{LDAP_BASE_DN}")
LDAP_SERVICE_DN = env_str("LDAP_SERVICE_DN", f"cn=mailadmin,ou=services,{LDAP_BASE_DN}")
LDAP_SERVICE_PASSWORD = env_secret("LDAP_SERVICE_PASSWORD", "")
LDAP_TIMEOUT = env_int("LDAP_TIMEOUT", 5)
# A BOOLEAN attribute on the mailAccount auxiliary class; TRUE blocks the user as a sender.
LDAP_SENDER_BLOCK_ATTR = env_str("LDAP_SENDER_BLOCK_ATTR", "mailSenderBlocked")
# Role groups (groupOfNames). Any user under LDAP_PEOPLE_DN with a mail address is an end user.
LDAP_ADMIN_GROUP_DN = env_str("LDAP_ADMIN_GROUP_DN", f"cn=mailadmin-admins,{LDAP_GROUPS_DN}")
LDAP_HELPDESK_GROUP_DN = env_str("LDAP_HELPDESK_GROUP_DN", f"cn=mailadmin-helpdesk,{LDAP_GROUPS_DN}")

# Reads the entry as the service account (a {CRAM-MD5} password cannot be checked by a simple
# bind) and verifies the password itself; mirrors names, mail and groups into the user row.
AUTHENTICATION_BACKENDS = ["accounts.backends.CramMD5LDAPBackend"]

# Failed sign-ins (accounts/throttle.py): LOGIN_FAILURE_LIMIT per account and client address
# within LOGIN_FAILURE_WINDOW seconds; LOGIN_ACCOUNT_FAILURE_LIMIT per account and hour from
# addresses it never signed in from; LOGIN_ADDRESS_FAILURE_LIMIT per address across accounts.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 900)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("LOGIN_ACCOUNT_FAILURE_LIMIT", 30)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 100)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Redis / Celery ---------------------------------------------------------------------
REDIS_PORT = env_int("REDIS_PORT", 6390)
REDIS_URL = env_str("REDIS_URL", f"redis://127.0.0.1:{REDIS_PORT}/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
# Periodic tasks (celery beat): each feature adds its entries in its own block below.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# --- Postfix ------------------------------------------------------------------------------
# Directory where the published hash: tables live (Postfix reads them from here).
POSTFIX_MAP_DIR = Path(env_str("POSTFIX_MAP_DIR", str(STATE_DIR / "postfix" / "maps")))
# Postfix configuration directory passed as -c to postmap/postconf/postfix.
POSTFIX_CONFIG_DIR = Path(env_str("POSTFIX_CONFIG_DIR", str(STATE_DIR / "postfix" / "etc")))
POSTMAP_COMMAND = env_str("POSTMAP_COMMAND", "/usr/sbin/postmap")
POSTFIX_RELOAD_COMMAND = env_str("POSTFIX_RELOAD_COMMAND", f"/usr/sbin/postfix -c {POSTFIX_CONFIG_DIR} reload")
# Loopback SMTP port of the project's private Postfix (demo and end-to-end tests).
SMTP_PORT = env_int("SMTP_PORT", 2525)
# The private Postfix relays all other mail (replies to outside senders, bounces) to this
# loopback port, where the demo and the tests run a capturing "outside world" SMTP server.
OUTSIDE_SMTP_PORT = env_int("OUTSIDE_SMTP_PORT", 2526)
# The table type: lmdb (changes applied in place, needs postfix-lmdb), cdb (rebuilt whole,
# needs postfix-cdb) or hash (Berkeley DB, which some distributions no longer ship).
POSTFIX_MAP_TYPE = env_str("POSTFIX_MAP_TYPE", "lmdb")
if POSTFIX_MAP_TYPE not in ("lmdb", "cdb", "hash"):
    raise ImproperlyConfigured("MAILADMIN_POSTFIX_MAP_TYPE must be lmdb, cdb or hash")
# ldap: table files (sender block) ask for StartTLS: on for a production LDAP_URI ldap://.
POSTFIX_LDAP_START_TLS = env_bool("POSTFIX_LDAP_START_TLS", False)
# What feeds the postfix app (postfix/features.py): the features whose entries go into the
# tables, those whose lines go into main.cf/master.cf, and where the directory's mailboxes
# come from. Another feature appends its own dotted path in its own block.
POSTFIX_MAP_FEATURES = ["aliases.postfix_feature.feature", "accounts.postfix_feature.feature",
                        "outofoffice.postfix_feature.feature"]  # fmt: skip
POSTFIX_CONFIG_FEATURES = ["accounts.sender_block.config", "outofoffice.handoff.config"]
POSTFIX_DIRECTORY_MAILBOXES = "aliases.postfix_feature.directory_mailboxes"
POSTFIX_SERVED_DOMAINS = "aliases.postfix_feature.served_domains"
# The tables mailadmin publishes, by name (POSTFIX_MAP_DIR/<name> and its database file).
POSTFIX_MAPS = (
    "virtual",
    "recipient_access",
    "sender_access",
    "transport",
    "mailbox_domains",
    "alias_domains",
    "mailboxes",
    # Who may send as each mailbox and live alias: SASL logins (smtpd_sender_login_maps).
    "sender_login",
)

# --- Map publication ----------------------------------------------------------------------
# This mail host: its worker publishes POSTFIX_MAP_DIR and records its state under this name.
MAIL_HOST = env_str("MAIL_HOST", socket.gethostname())
# Every mail host whose worker publishes maps; a change is queued to each host's own queue
# (maps.<host>), which that host's worker consumes.
MAP_HOSTS = env_list("MAP_HOSTS", [MAIL_HOST])
# Coalescing: publish once no change arrived for QUIET ms, or at the latest MAX_WAIT ms after
# the first pending change (a burst of creations becomes a few publications).
MAP_PUBLISH_QUIET_MS = env_int("MAP_PUBLISH_QUIET_MS", 150)
MAP_PUBLISH_MAX_WAIT_MS = env_int("MAP_PUBLISH_MAX_WAIT_MS", 3000)
# Changes naming at most this many keys since the last publication are applied key by key
# (lmdb: in place; hash: on a copy); more, or a change naming none, re-render every table.
MAP_INCREMENTAL_MAX_KEYS = env_int("MAP_INCREMENTAL_MAX_KEYS", 2000)
# Postfix is reloaded after a change at most once per this many seconds (a skipped reload is
# done by the next reconcile; Postfix daemons also notice changed tables by themselves).
POSTFIX_RELOAD_MIN_INTERVAL = env_int("POSTFIX_RELOAD_MIN_INTERVAL", 5)
# Workers reconcile this often (cheap unless something is pending), and re-render fully
# (catching directory changes made outside mailadmin) every MAP_FULL_RECONCILE_INTERVAL.
MAP_RECONCILE_INTERVAL = env_int("MAP_RECONCILE_INTERVAL", 30)
MAP_FULL_RECONCILE_INTERVAL = env_int("MAP_FULL_RECONCILE_INTERVAL", 600)
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 2)
for _host in MAP_HOSTS:
    CELERY_BEAT_SCHEDULE[f"reconcile-maps-{_host}"] = {
        "task": "postfix.tasks.reconcile_maps",
        "schedule": float(MAP_RECONCILE_INTERVAL),
        "options": {"queue": f"maps.{_host}", "expires": float(MAP_RECONCILE_INTERVAL)},
    }

# How often (seconds) the directory's mailbox addresses are compared with those last seen; a
# difference (a `mail` changed or removed, an entry deleted, by any LDAP tool) requests a
# publication, so the maps follow the directory within this delay without anyone signing in.
DIRECTORY_SYNC_SECONDS = env_int("DIRECTORY_SYNC_SECONDS", 60)
if DIRECTORY_SYNC_SECONDS < 1:
    raise ImproperlyConfigured("MAILADMIN_DIRECTORY_SYNC_SECONDS must be at least 1")
CELERY_BEAT_SCHEDULE["directory-sync"] = {
    "task": "aliases.tasks.sync_directory",
    "schedule": float(DIRECTORY_SYNC_SECONDS),
    "options": {"expires": float(DIRECTORY_SYNC_SECONDS)},
}

# Mail domains: the organisation's mailbox domain and its disposable-alias domain.
MAIL_DOMAIN = env_str("MAIL_DOMAIN", "example.org")
ALIAS_DOMAIN = env_str("ALIAS_DOMAIN", "alias.example.org")
ABUSE_CONTACT = env_str("ABUSE_CONTACT", f"abuse@{MAIL_DOMAIN}")

# --- Aliases --------------------------------------------------------------------------------
# Per user: at most ALIAS_LIMIT_PER_USER aliases, and ALIAS_CREATION_RATE new ones per
# ALIAS_CREATION_WINDOW seconds (deleted ones count: they were created).
ALIAS_LIMIT_PER_USER = env_int("ALIAS_LIMIT_PER_USER", 2000)
ALIAS_CREATION_RATE = env_int("ALIAS_CREATION_RATE", 50)
ALIAS_CREATION_WINDOW = env_int("ALIAS_CREATION_WINDOW", 3600)
ALIASES_PER_PAGE = env_int("ALIASES_PER_PAGE", 50)

# --- Sender suspension ------------------------------------------------------------------
# The text after "554 5.7.1 <address>: Sender address rejected:" for a suspended sender, in
# the LDAP sender_block.cf and the hash: sender_access map. One printable ASCII line: it is
# the whole SMTP reply text, so the per-user reason never goes there.
SUSPENSION_REJECT_TEXT = env_str(
    "SUSPENSION_REJECT_TEXT", f"Sending is suspended for this account; contact {ABUSE_CONTACT}"
).strip()
if not (0 < len(SUSPENSION_REJECT_TEXT) <= 200 and SUSPENSION_REJECT_TEXT.isascii()) or not (
    SUSPENSION_REJECT_TEXT.isprintable()
):
    raise ImproperlyConfigured("MAILADMIN_SUSPENSION_REJECT_TEXT must be one printable ASCII line of 1-200 characters")
# How often the worker lifts suspensions whose end has passed and re-applies the database's
# suspensions to the LDAP sender-block flag (seconds).
SUSPENSION_SWEEP_INTERVAL = env_int("SUSPENSION_SWEEP_INTERVAL", 60)
CELERY_BEAT_SCHEDULE["suspension-sweep"] = {
    "task": "accounts.tasks.sweep_suspensions",
    "schedule": float(SUSPENSION_SWEEP_INTERVAL),
}

# --- Vacation responder -----------------------------------------------------------------
RESPONDER_HOST = env_str("RESPONDER_HOST", "127.0.0.1")
RESPONDER_PORT = env_int("RESPONDER_PORT", 10026)
# Postfix routes copies for users on vacation to <user>=<domain>@VACATION_ROUTING_DOMAIN.
VACATION_ROUTING_DOMAIN = env_str("VACATION_ROUTING_DOMAIN", "autoreply.mailadmin.invalid")
# The loopback smtpd that re-queues each copy with DSN NOTIFY=NEVER (outofoffice/handoff.py).
VACATION_HANDOFF_PORT = env_int("VACATION_HANDOFF_PORT", 10027)
# Out of office: where the responder hands its replies (the private/local Postfix).
VACATION_SMTP_HOST = env_str("VACATION_SMTP_HOST", "127.0.0.1")
VACATION_SMTP_PORT = env_int("VACATION_SMTP_PORT", SMTP_PORT)
# Out of office: how many copies the responder works on at once (threads for SQL and SMTP).
RESPONDER_WORKERS = env_int("RESPONDER_WORKERS", 16)
# The responder keeps only a copy's headers (a decision needs nothing else) and discards the
# body as it arrives; a copy larger than this is refused (552 5.3.4, dropped silently by the
# hand-off) and advertised as the LMTP SIZE limit, so Postfix does not even send it.
RESPONDER_MAX_MESSAGE_BYTES = env_int("RESPONDER_MAX_MESSAGE_BYTES", 50 * 1024 * 1024)
# Caps on vacation replies: a leaked or suspended account must not become a mail cannon
# through forged envelope senders. Past a cap, copies get no reply (logged with the cap).
VACATION_REPLIES_PER_USER_HOUR = env_int("VACATION_REPLIES_PER_USER_HOUR", 30)
VACATION_REPLIES_PER_USER_DAY = env_int("VACATION_REPLIES_PER_USER_DAY", 200)
VACATION_REPLIES_ALL_USERS_HOUR = env_int("VACATION_REPLIES_ALL_USERS_HOUR", 1000)
# The authserv-id our own MTA writes into Authentication-Results (RFC 8601); a copy whose
# header from this id says spf=fail, spf=softfail or dmarc=fail gets no reply. "" trusts none.
AUTHSERV_ID = env_str("AUTHSERV_ID", f"mail.{MAIL_DOMAIN}")
# Out of office: how often (seconds) ended vacations are taken out of the maps.
VACATION_SWEEP_INTERVAL = env_int("VACATION_SWEEP_INTERVAL", 60)
CELERY_BEAT_SCHEDULE["vacation-sweep"] = {
    "task": "outofoffice.tasks.sweep_vacations",
    "schedule": float(VACATION_SWEEP_INTERVAL),
}

# --- Second factor (mfa/, docs/second-factor.md) ------------------------------------------
# Roles that must have a second factor (TOTP or a passkey): admin, helpdesk, user (end users).
# Such a person signing in without one is taken to enrolment and can do nothing else first.
_ROLE_NAMES = {"admin": "admin", "helpdesk": "helpdesk", "user": "end user"}
_required_roles = env_list("SECOND_FACTOR_ROLES", ["admin", "helpdesk"])
if any(name not in _ROLE_NAMES for name in _required_roles):
    raise ImproperlyConfigured(
        f"MAILADMIN_SECOND_FACTOR_ROLES: use admin, helpdesk and/or user, got {','.join(_required_roles)!r}"
    )
SECOND_FACTOR_ROLES = frozenset(_ROLE_NAMES[name] for name in _required_roles)
# Suspending, reinstating, resetting a password or a second factor and disabling an account ask
# for the second factor again when it was given more than this many seconds ago.
SECOND_FACTOR_MAX_AGE = env_int("SECOND_FACTOR_MAX_AGE", 900)
# Wrong codes (TOTP or recovery) per account within the window; past it every code is refused.
SECOND_FACTOR_FAILURE_LIMIT = env_int("SECOND_FACTOR_FAILURE_LIMIT", 10)
SECOND_FACTOR_FAILURE_WINDOW = env_int("SECOND_FACTOR_FAILURE_WINDOW", 900)
# The name authenticator apps and passkey prompts show for this site.
SECOND_FACTOR_ISSUER = env_str("SECOND_FACTOR_ISSUER", f"mailadmin {MAIL_DOMAIN}")
# The WebAuthn relying party: the host name passkeys are bound to. Empty: the host name the
# browser used. Set it when the site has more than one name (passkeys work under this name and
# its subdomains only).
WEBAUTHN_RP_ID = env_str("WEBAUTHN_RP_ID", "")

# --- Mail the app sends (mailadmin/outgoing_mail.py) ----------------------------------------
# Notices to people (a second factor was reset) go to this Postfix over SMTP, from this address
# (header From and envelope sender: bounces reach a person).
MAIL_SUBMISSION_HOST = env_str("MAIL_SUBMISSION_HOST", "127.0.0.1")
MAIL_SUBMISSION_PORT = env_int("MAIL_SUBMISSION_PORT", SMTP_PORT)
NOTICE_SENDER = env_str("NOTICE_SENDER", f"postmaster@{MAIL_DOMAIN}")
CELERY_BEAT_SCHEDULE["second-factor-reset-notices"] = {
    "task": "mfa.tasks.send_reset_notices",
    "schedule": 60.0,
}
# Notices (suspensions) to one address in an hour; more are kept unsent and logged.
NOTICE_MAX_PER_HOUR = env_int("NOTICE_MAX_PER_HOUR", 5)
# --- Outbound limits (limits/; decided by the policy service on mail local people send) ------
# Soft limits: past one, further mail is deferred (451 4.7.1). Past LIMIT_HARD_FACTOR times the
# hourly/daily ones the sender is suspended for LIMIT_SUSPENSION_SECONDS, and told by mail.
LIMIT_MESSAGES_PER_HOUR = env_int("LIMIT_MESSAGES_PER_HOUR", 100)
LIMIT_RECIPIENTS_PER_HOUR = env_int("LIMIT_RECIPIENTS_PER_HOUR", 300)
LIMIT_RECIPIENTS_PER_DAY = env_int("LIMIT_RECIPIENTS_PER_DAY", 1000)
LIMIT_RECIPIENTS_PER_MESSAGE = env_int("LIMIT_RECIPIENTS_PER_MESSAGE", 100)
LIMIT_HARD_FACTOR = env_int("LIMIT_HARD_FACTOR", 3)
LIMIT_SUSPENSION_SECONDS = env_int("LIMIT_SUSPENSION_SECONDS", 24 * 3600)
# Clients whose mail without a SASL login counts as sent by the envelope sender (webmail, scripts).
LIMIT_LOCAL_NETWORKS = env_list("LIMIT_LOCAL_NETWORKS", ["127.0.0.0/8", "::1/128"])
for _network in LIMIT_LOCAL_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"MAILADMIN_LIMIT_LOCAL_NETWORKS: {_network!r} is not a network") from None
# Where every mail host counts: one Redis shared by all of them (a database number of its own).
LIMIT_COUNTER_URL = env_str("LIMIT_COUNTER_URL", REDIS_URL)
CELERY_BEAT_SCHEDULE["notices"] = {"task": "notices.tasks.send_pending_notices", "schedule": 60.0}

# --- Alias activity, sender blocks and the policy service (activity/, policy/, docs/policy.md) ---
# The policy service (manage.py run_policy) answers Postfix at RCPT on this loopback address.
POLICY_HOST = env_str("POLICY_HOST", "127.0.0.1")
POLICY_PORT = env_int("POLICY_PORT", 10040)
# Postfix waits this long (seconds) for an answer, then takes POLICY_DEFAULT_ACTION: DUNNO lets
# mail through while the service is down or slow (fail-open); "451 4.3.5 ..." defers it instead
# (fail-closed: senders retry later, blocks always hold).
POLICY_TIMEOUT = env_int("POLICY_TIMEOUT", 5)
POLICY_DEFAULT_ACTION = env_str("POLICY_DEFAULT_ACTION", "DUNNO").strip()
if POLICY_DEFAULT_ACTION != "DUNNO" and not (
    POLICY_DEFAULT_ACTION[:1] in ("4", "5") and POLICY_DEFAULT_ACTION.isascii() and POLICY_DEFAULT_ACTION.isprintable()
):
    raise ImproperlyConfigured('MAILADMIN_POLICY_DEFAULT_ACTION must be DUNNO or a reply such as "451 4.3.5 Try again"')
# The text after "550 5.7.1" for a blocked sender: neutral, the same for every kind of block.
POLICY_REJECT_TEXT = env_str("POLICY_REJECT_TEXT", "Delivery to this recipient is not permitted").strip()
if not (0 < len(POLICY_REJECT_TEXT) <= 200 and POLICY_REJECT_TEXT.isascii() and POLICY_REJECT_TEXT.isprintable()):
    raise ImproperlyConfigured("MAILADMIN_POLICY_REJECT_TEXT must be one printable ASCII line of 1-200 characters")
# How often (seconds) the service looks for changed blocks and aliases (two one-row reads); a
# block saved on the web takes effect within this time, whether or not Celery or Redis run.
POLICY_REFRESH_SECONDS = float(env_str("POLICY_REFRESH_SECONDS", "0.5"))
# Counts are kept in memory and written every ACTIVITY_FLUSH_SECONDS: a crash loses at most
# that many seconds of counts (never a block: blocks are rows written by the web app).
ACTIVITY_FLUSH_SECONDS = env_int("ACTIVITY_FLUSH_SECONDS", 5)
# Daily counts, sender domains and dismissed leak flags older than this are deleted (daily task).
ACTIVITY_RETENTION_DAYS = env_int("ACTIVITY_RETENTION_DAYS", 90)
if ACTIVITY_RETENTION_DAYS < 31:
    raise ImproperlyConfigured("MAILADMIN_ACTIVITY_RETENTION_DAYS must be at least 31 (the list shows 30 days)")
CELERY_BEAT_SCHEDULE["activity-retention"] = {"task": "activity.tasks.prune_activity", "schedule": 3600.0}
# Its check and main.cf lines in the generated Postfix configuration (policy/postfix.py).
POSTFIX_CONFIG_FEATURES.append("policy.postfix.config")
# Leak alerts: a sender whose registrable domain (Public Suffix List) differs from the alias's
# site is "unrelated", unless it is one of these mail services that send for many sites.
LEAK_RELATED_DOMAINS = env_list(
    "LEAK_RELATED_DOMAINS",
    [
        "amazonses.com",
        "sendgrid.net",
        "mailgun.org",
        "mailchimpapp.net",
        "mcsv.net",
        "mcdlv.net",
        "rsgsv.net",
        "list-manage.com",
        "mandrillapp.com",
        "sparkpostmail.com",
        "postmarkapp.com",
        "sendinblue.com",
        "brevo.com",
        "customeriomail.com",
        "mailjet.com",
        "exacttarget.com",
        "salesforce.com",
        "zendesk.com",
        "hubspotemail.net",
        "klaviyomail.com",
    ],
)

# Staff console (docs/console.md): the sign-in page's "Forgot your password?" text, saying whom
# to ask; plain text, shown as typed.
SIGN_IN_HELP = env_str(
    "SIGN_IN_HELP", "Forgot your password? Ask your helpdesk or mail administrator to set a new one."
)

# CSV import and export (bulk/, docs/import-export.md): the largest file and number of rows
# one import takes. The worker resumes imports queued while the broker was down.
BULK_MAX_BYTES = env_int("BULK_MAX_BYTES", 10_000_000)
BULK_MAX_ROWS = env_int("BULK_MAX_ROWS", 50_000)
CELERY_BEAT_SCHEDULE["resume-imports"] = {"task": "bulk.tasks.resume_imports", "schedule": 60.0}

# Web server port used by the demo runner.
WEB_PORT = env_int("WEB_PORT", 8000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Delivery trail (trail/, docs/delivery-trail.md) ----------------------------------------
# The Postfix log `manage.py follow_maillog` reads: Postfix's own (maillog_file, written by
# postlogd; the generated main.cf sets it when MAILLOG_POSTLOG is on) or syslog's mail.log.
MAILLOG_FILE = Path(env_str("MAILLOG_FILE", str(STATE_DIR / "postfix" / "maillog")))
MAILLOG_POSTLOG = env_bool("MAILLOG_POSTLOG", True)
# The zone of the log's timestamps (the mail host's local time); empty: this machine's zone.
MAILLOG_TIME_ZONE = env_str("MAILLOG_TIME_ZONE", "")
import zoneinfo  # noqa: E402

if MAILLOG_TIME_ZONE:
    try:
        zoneinfo.ZoneInfo(MAILLOG_TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"MAILADMIN_MAILLOG_TIME_ZONE: unknown time zone {MAILLOG_TIME_ZONE!r}") from None
# How often the follower looks for new lines (ms), and how long after a rename-rotation it
# keeps reading the old file while the new one stays empty (seconds).
MAILLOG_POLL_MS = env_int("MAILLOG_POLL_MS", 500)
MAILLOG_ROTATION_GRACE = env_int("MAILLOG_ROTATION_GRACE", 5)
# Records older than this many days are deleted (hourly).
TRAIL_RETENTION_DAYS = env_int("TRAIL_RETENTION_DAYS", 30)
if TRAIL_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("MAILADMIN_TRAIL_RETENTION_DAYS must be at least 1")
CELERY_BEAT_SCHEDULE["trail-retention"] = {"task": "trail.tasks.delete_expired_records", "schedule": 3600.0}
INSTALLED_APPS.append("trail")
# The maillog_file lines in the generated Postfix configuration (trail/postlog.py).
POSTFIX_CONFIG_FEATURES.append("trail.postlog.config")
# --- Alias API and personal tokens (api/, docs/api.md) ---------------------------------------
# Requests per token per window; past it the API answers 429 with Retry-After. Counted in Redis
# (REDIS_URL); when Redis does not answer within COUNTER_TIMEOUT seconds the API answers 503.
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 120)
API_RATE_WINDOW = env_int("API_RATE_WINDOW", 60)
COUNTER_TIMEOUT = float(env_int("COUNTER_TIMEOUT_MS", 500)) / 1000
# Origins besides the browser extensions' that may call the extension endpoints cross-origin
# (comma-separated, e.g. https://vault.example.org for a self-hosted Bitwarden web vault).
API_CORS_ORIGINS = env_list("API_CORS_ORIGINS", [])
# Database connections kept open between requests, in seconds (0: a new one for every request).
# Opening one costs each request about a third of its CPU on the API (scripts/bench api,
# docs/api.md); the health check replaces a connection the server has dropped.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# --- Explain an address (explain/, docs/explain.md) ------------------------------------------
# Reads this host's live tables (POSTFIX_MAP_DIR) with postmap -q: serve it where the maps are.
INSTALLED_APPS.append("explain")
# --- The staff console (console/, docs/console.md) -------------------------------------------
# Pages that combine apps (the home page, the user list and a person's page, the audit log):
# an app above accounts, aliases, out-of-office and audit, so none of those imports another's pages.
INSTALLED_APPS.append("console")
# --- Page speed (docs/page-speed.md) ---------------------------------------------------------
# Django's form renderer with the plainest widget templates built in Python (the same HTML).
FORM_RENDERER = "mailadmin.form_renderer.WidgetRenderer"
