"""Sign-in against OpenLDAP where userPassword holds Dovecot {CRAM-MD5} values.

slapd cannot check a {CRAM-MD5} value on a simple bind, so the backend reads the entry
as the service account and verifies the password itself; django-auth-ldap still builds
the Django user and mirrors group membership (roles).
"""

from typing import Any

import ldap
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest
from django_auth_ldap.backend import LDAPBackend, _LDAPUser

from accounts.cram_md5 import verify_cram_md5
from accounts.directory import UID_PATTERN, DirectoryUnavailable

MAX_PASSWORD_LENGTH = 1024


_UNREACHABLE = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR)


class CramMD5LDAPUser(_LDAPUser):
    def _search_for_user_dn(self) -> str | None:
        # As the library's, but an unreachable directory is an error, not "no such user".
        try:
            results = self.settings.USER_SEARCH.execute(self.connection, {"user": self._username})
        except _UNREACHABLE as exc:
            raise DirectoryUnavailable("the directory is unreachable") from exc
        if results is None or len(results) != 1:
            return None
        user_dn, self._user_attrs = results[0]
        return user_dn  # type: ignore[no-any-return]

    def _authenticate_user_dn(self, password: str) -> None:
        if self.dn is None:
            raise self.AuthenticationFailed("no such user")
        stored = (self.attrs or {}).get("userPassword") or []
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in stored]
        # Check every value (no early exit) so timing says nothing about which matched.
        matches = [verify_cram_md5(password, value) for value in values]
        if not any(matches):
            raise self.AuthenticationFailed("password does not match")

    def authenticate(self, password: str) -> AbstractBaseUser | None:
        try:
            self._authenticate_user_dn(password)
            self._check_requirements()
            self._get_or_create_user()
        except self.AuthenticationFailed:
            return None
        except _UNREACHABLE as exc:
            raise DirectoryUnavailable("the directory is unreachable") from exc
        return self._user  # type: ignore[no-any-return]


class CramMD5LDAPBackend(LDAPBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> AbstractBaseUser | None:
        if not username or not password or len(password) > MAX_PASSWORD_LENGTH:
            return None
        if not UID_PATTERN.match(username) or "\0" in password:
            return None
        ldap_user = CramMD5LDAPUser(self, username=username, request=request)
        return self.authenticate_ldap_user(ldap_user, password)  # type: ignore[no-any-return]
