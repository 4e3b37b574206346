"""The console's "Login with SSO" in a real browser: headless Chromium (Debian's, driven by Playwright,
no browser download) from the console's login page through Keycloak's form to the object browser.

Skipped with its reason where no browser or no Playwright is installed, and on prod (no bootstrap
user). The HTTP-level login and the STS exchange are test_identity.py's.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pytest

from tests.smoke.stack import StackOutputs, mismatch

pytestmark = pytest.mark.smoke

BROWSER_SECONDS = 60.0
CHROMIUM = ("chromium", "chromium-browser")


def test_login_with_sso_leads_through_keycloak_to_the_object_browser(
    stack: StackOutputs, stack_config: Any, tls_verify: bool | str
) -> None:
    if stack.is_prod:
        pytest.skip("prod has no bootstrap user (created on dev and staging only)")
    chromium = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if chromium is None:
        pytest.skip("no browser installed: apt-get install chromium (scripts/test installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    console = stack.endpoint("console")
    username = stack.optional("keycloakBootstrapUser") or stack_config.identity.bootstrap_username
    # Chromium cannot take the CA file the other checks use: a self-signed stack certificate is accepted
    # as such, a publicly trusted one is verified
    self_signed = isinstance(tls_verify, str)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"] if os.geteuid() == 0 else []
        )
        try:
            page = browser.new_context(ignore_https_errors=self_signed).new_page()
            page.set_default_timeout(BROWSER_SECONDS * 1000)
            page.goto(f"{console}/login")
            sso = re.compile(rf"{re.escape(stack_config.identity.sso_display_name)}|Login with SSO|SSO", re.IGNORECASE)
            page.get_by_role("button", name=sso).first.click()
            page.wait_for_url(re.compile(re.escape(stack.endpoint("keycloak")) + r"/realms/.*"))
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", stack.value("keycloakBootstrapPassword"))
            page.click("#kc-login")
            page.wait_for_url(re.compile(re.escape(console) + r"/browser"))
            landed = page.url
        finally:
            browser.close()
    assert landed.startswith(f"{console}/browser"), mismatch("page after the SSO login", f"{console}/browser", landed)
