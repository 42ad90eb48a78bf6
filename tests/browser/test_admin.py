"""The admin page drives the lifecycle through the admin API: import a plan file, upload the
package, prepare, start, move to the next stage; the status and credentials show."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

from integration.conftest import ADMIN_TOKEN, ServerProcess

from .conftest import PLAN_ID, screenshot


def status(page: Page, expected: str) -> None:
    page.wait_for_selector(f'#plan-status[data-status="{expected}"]')


def test_admin_page_imports_prepares_and_starts(
    server: ServerProcess, new_context: Callable[[], BrowserContext], tmp_path: Path
) -> None:
    from examsync_server.demo.sample import sample_package, sample_plan

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(sample_plan(candidates=4), ensure_ascii=False))
    package_file = tmp_path / "package.zip"
    package_file.write_bytes(sample_package())

    page = new_context().new_page()
    page.goto(f"{server.base}/admin#token={ADMIN_TOKEN}")
    assert "token" not in page.url  # taken out of the address bar at once
    page.set_input_files("#plan-file", plan_file)
    page.click("#import")
    status(page, "created")
    assert page.input_value("[name=planId]") == PLAN_ID
    page.set_input_files("#package-file", package_file)
    page.click("#upload")
    page.wait_for_selector('#result[data-kind="ok"]')
    page.click("#prepare")
    status(page, "ready")
    page.click("#start")
    status(page, "in_progress")
    page.click("#advance")
    page.wait_for_function("() => document.querySelector('#facts').innerText.includes('STEP02')")
    assert page.locator("#candidates tr").count() == 4
    assert "AUTH1234" in page.inner_text("#candidates")

    page.click("#prepare")  # refused while in progress: the reason is shown, nothing changes
    page.wait_for_selector('#result[data-kind="error"]')
    assert "plan_in_progress" in page.inner_text("#result")
    status(page, "in_progress")
    screenshot(page, "admin")
