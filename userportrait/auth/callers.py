"""Who an ``access_token`` on the datacube routes speaks for (docs/api.md).

An app's own token reads that app; a third-party platform's ``authorizer_access_token``
reads the app that authorised it, and only with permission set 18 granted (else 61007).
A ``component_access_token`` is neither and answers 40001.
"""

from __future__ import annotations

from dataclasses import dataclass

from userportrait.auth.component import DATA_ANALYSIS, ComponentStore
from userportrait.auth.store import AuthStore
from userportrait.errors import InvalidCredential


@dataclass(frozen=True, slots=True)
class Caller:
    appid: str
    #: The platform calling on the app's behalf, None for the app's own token.
    component_appid: str | None = None


class Callers:
    def __init__(self, apps: AuthStore, components: ComponentStore) -> None:
        self.apps = apps
        self.components = components

    def resolve(self, token: str | None) -> Caller:
        try:
            return Caller(self.apps.appid_for(token))
        except InvalidCredential as exc:
            try:
                comp, appid = self.components.authorizer(token or "", DATA_ANALYSIS)
            except InvalidCredential:
                raise exc from None
            return Caller(appid, comp)
