"""The status page in a real headless browser (Debian's chromium driven by playwright).

``.ci/run`` installs chromium when it is missing, so in CI this always runs;
elsewhere it is skipped when /usr/bin/chromium is absent. With
``LOADTEST_CORE_SCREENSHOTS=DIR`` it also writes the screenshots used in
docs/operating.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest_core.client import channel
from tests.client.conftest import Claim, World
from tests.serving import AGENT, USER, serving

CHROMIUM = "/usr/bin/chromium"

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"no {CHROMIUM}: apt-get install chromium", allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(tmp_path_factory.mktemp("browser"), "--lost-after", "600") as served:
        user, agent = channel(served.grpc, USER), channel(served.grpc, AGENT)
        try:
            yield World(served, user, agent)
        finally:
            user.close()
            agent.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors  # CSP violations and script errors show up here


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    target = os.environ.get("LOADTEST_CORE_SCREENSHOTS")
    path = Path(target) / name if target else tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/ui/")
    page.fill('input[name="token"]', USER)
    page.click('button[type="submit"]')
    page.wait_for_selector("main#live table")


def test_sign_in_filter_open_and_stop(
    world: World, browser: Any, page: Page, tmp_path: Path
) -> None:
    """A person signs in, filters to RUNNING, opens a test, stops it and sees it stopped."""
    base = f"http://{world.served.http}"
    runner = world.running("checkout-flow", plan_id="42", env="staging")
    waiting = world.create(world.register("tank-2"), "search-api", plan_id="43")
    done = world.running("login-burst", plan_id="41")
    world.claim(done, Claim.FINISHED)
    failed = world.running("nightly-soak", plan_id="40")
    world.claim(failed, Claim.FAILED)
    _sign_in(page, base)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["loadtest_core_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    for test_id in (runner, waiting, done, failed):
        assert page.locator(f'tr[data-test="{test_id}"]').count() == 1
    _shot(page, "status-page.png", tmp_path)

    page.select_option('select[name="status"]', "RUNNING")
    page.click("text=Filter")
    page.wait_for_url("**/ui/?status=RUNNING**")
    assert page.locator(f'tr[data-test="{runner}"]').count() == 1
    assert page.locator(f'tr[data-test="{waiting}"]').count() == 0

    page.fill('input[name="tag"]', "plan_id=43")
    page.select_option('select[name="status"]', "")
    page.click("text=Filter")
    page.wait_for_url("**tag=plan_id%3D43**")
    assert page.locator("main#live tbody tr").count() == 1

    page.goto(f"{base}/ui/")
    page.click(f'a[href="/ui/tests/{runner}"]')
    page.wait_for_selector("table.events")
    assert page.locator("dl.summary .s-RUNNING").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("form.stop-form button")
    page.wait_for_selector("text=Stop requested.")
    assert page.locator("dl.summary .s-STOPPING").count() == 1
    assert page.locator("text=pending: waiting for the agent").count() == 1
    page.evaluate("window.__notReloaded = true")
    world.claim(runner, Claim.STOPPED)
    page.wait_for_selector("dl.summary .s-STOPPED", timeout=20_000)  # the auto-refresh
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("text=done: STOPPED").count() == 1
    assert page.locator("form.stop-form").count() == 0
    _shot(page, "status-page-test.png", tmp_path)


def test_a_dismissed_confirmation_stops_nothing(world: World, page: Page) -> None:
    """Cancelling the confirmation dialog leaves the test running."""
    base = f"http://{world.served.http}"
    test_id = world.running("keep-running")
    _sign_in(page, base)
    page.goto(f"{base}/ui/tests/{test_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("form.stop-form button")
    page.wait_for_timeout(500)
    page.reload()
    assert page.locator("dl.summary .s-RUNNING").count() == 1
