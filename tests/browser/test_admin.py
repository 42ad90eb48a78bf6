"""The admin page drives the lifecycle through the admin API: import a plan file, upload the
package, prepare, start, move to the next stage; the status and credentials show."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

from integration.conftest import ADMIN_TOKEN, ServerProcess

from .conftest import PLAN_ID, open_admin, screenshot


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

    page = open_admin(new_context(), server)
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


def test_admin_page_signs_in_with_a_form_and_out_again(
    server: ServerProcess, new_context: Callable[[], BrowserContext]
) -> None:
    from examsync_server.demo.sample import sample_plan

    server.admin("PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=sample_plan(candidates=2))
    context = new_context()
    page = context.new_page()
    # an older link's fragment is neither used nor left in the address bar
    page.goto(f"{server.base}/admin?plan={PLAN_ID}#token={ADMIN_TOKEN}")
    page.wait_for_function("() => !location.hash")
    assert page.is_visible("#signin") and not page.is_visible("#workspace")

    page.fill("#signin [name=token]", ADMIN_TOKEN[:-1] + "x")  # a wrong token is refused
    page.click("#signin button[type=submit]")
    page.wait_for_selector('#signin-result[data-kind="error"]')
    assert not page.is_visible("#workspace")

    page.fill("#signin [name=token]", ADMIN_TOKEN)
    page.click("#signin button[type=submit]")
    status(page, "created")
    assert ADMIN_TOKEN not in page.url
    assert page.input_value("#signin [name=token]") == ""  # not left in the page either
    # kept for this tab: a reload stays signed in; the token is in sessionStorage only
    page.reload()
    status(page, "created")
    kept = page.evaluate("() => sessionStorage.getItem('examsync-demo:admin-token')")
    assert kept == ADMIN_TOKEN
    assert ADMIN_TOKEN not in page.evaluate("() => JSON.stringify(localStorage)")
    # another tab of the same browser must sign in itself
    other = context.new_page()
    other.goto(f"{server.base}/admin?plan={PLAN_ID}")
    assert other.is_visible("#signin")

    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    assert not page.is_visible("#workspace")
    assert page.evaluate("() => sessionStorage.getItem('examsync-demo:admin-token')") is None
    assert page.locator("#candidates tr").count() == 0  # auth codes are not left on screen
    page.reload()
    assert page.is_visible("#signin") and not page.is_visible("#workspace")
