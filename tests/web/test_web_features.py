"""The web app's trash (with undo), versions, quota, search and share dialog, end to end in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.test_quota_search import set_quota
from tests.web.conftest import Pages, both_stacks, screenshot, upload_bytes
from tests.web.test_web import names_on_server, row


def test_delete_then_undo_and_restore_from_the_trash_view(pages: Pages) -> None:
    user = pages.new_user()
    upload_bytes(pages.server, user, "/keep.txt", b"keep")
    upload_bytes(pages.server, user, "/Old/gone.txt", b"gone")
    page = pages.signed_in(user)

    page.get_by_role("button", name="Delete keep.txt").click()
    page.get_by_role("dialog", name="Delete keep.txt?").get_by_role("button", name="Delete").click()
    expect(row(page, "keep.txt")).to_have_count(0)
    undo = page.get_by_role("button", name="Undo")
    expect(undo).to_be_focused()  # the row it was on is gone: the keyboard lands on Undo
    page.keyboard.press("Enter")
    expect(row(page, "keep.txt")).to_be_visible()
    assert names_on_server(pages.server, user) == ["Old", "keep.txt"]

    page.get_by_role("link", name="Old").click()
    page.get_by_role("button", name="Delete gone.txt").click()
    page.get_by_role("dialog", name="Delete gone.txt?").get_by_role("button", name="Delete").click()
    expect(row(page, "gone.txt")).to_have_count(0)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Trash").click()
    item = row(page, "gone.txt")
    expect(item.get_by_role("link", name="/Old")).to_be_visible()  # where it was
    expect(item.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))  # when
    screenshot(page, "trash")
    item.get_by_role("button", name="Restore gone.txt").click()
    expect(row(page, "gone.txt")).to_have_count(0)
    expect(page.get_by_text("The trash is empty.")).to_be_visible()
    assert names_on_server(pages.server, user, "/Old") == ["gone.txt"]


def test_versions_dialog_restores_an_older_version(pages: Pages) -> None:
    user = pages.new_user()
    first = upload_bytes(pages.server, user, "/story.txt", b"once upon a time\n")
    upload_bytes(pages.server, user, "/story.txt", b"the end\n", parent_rev=int(first["rev"]))  # type: ignore[call-overload]
    page = pages.signed_in(user)
    page.get_by_role("button", name="Versions story.txt").click()
    dialog = page.get_by_role("dialog", name="Versions of story.txt")
    versions = dialog.locator("li.version")
    expect(versions).to_have_count(2)
    expect(versions.first.get_by_text("current")).to_be_visible()
    screenshot(page, "versions")
    dialog.get_by_role("button", name=f"Restore version {first['rev']}").click()
    expect(versions).to_have_count(3)
    content = user.api(pages.server, "GET", f"/api/v1/files/{first['id']}/content").content
    assert content == b"once upon a time\n"
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Versions story.txt")).to_be_focused()


def test_quota_in_the_header_and_search_by_a_word_inside_a_file(pages: Pages) -> None:
    user = pages.new_user()
    set_quota(pages.server, user.name, "1MB")
    upload_bytes(pages.server, user, "/Docs/notes.txt", b"remember the zebra crossing\n" * 10)
    upload_bytes(pages.server, user, "/other.txt", b"nothing to see")
    page = pages.signed_in(user)
    expect(page.locator("#quota-label")).to_have_text("294 B of 1.0 MB used")
    expect(page.get_by_role("meter")).to_have_attribute("aria-labelledby", "quota-label")

    box = page.get_by_role("searchbox", name="Search files")
    box.fill("zebra")
    box.press("Enter")
    expect(page.get_by_role("heading", name="Search: zebra")).to_be_visible()
    results = page.locator("li.result")
    expect(results).to_have_count(1)
    screenshot(page, "search")
    results.get_by_role("link", name="notes.txt, in /Docs").click()
    expect(page.get_by_role("heading", name="Docs")).to_be_visible()
    expect(row(page, "notes.txt")).to_be_visible()


@both_stacks
def test_share_a_folder_with_a_viewer_and_a_link_with_a_password(pages: Pages, tmp_path: Path) -> None:
    pages.allow("status of 403")  # the viewer's refused upload
    pages.allow("status of 401")  # the link page without (or with a wrong) password
    pages.allow("status of 404")  # the revoked link
    owner, friend = pages.new_user(), pages.new_user()
    upload_bytes(pages.server, owner, "/Team/plan.txt", b"the plan\n")
    page = pages.signed_in(owner)

    page.get_by_role("button", name="Share Team").click()
    dialog = page.get_by_role("dialog", name="Share Team")
    dialog.get_by_label("Add a person (user name)").fill(friend.name)
    dialog.get_by_label("Role", exact=True).select_option("viewer")
    dialog.get_by_role("button", name="Add person").click()
    expect(dialog.get_by_label(f"Role of {friend.name}")).to_have_value("viewer")
    screenshot(page, "share-dialog")
    page.keyboard.press("Escape")
    expect(row(page, "Team").get_by_text("shared")).to_be_visible()

    other = pages.signed_in(friend)
    expect(row(other, "Team").get_by_text("shared · viewer")).to_be_visible()
    row(other, "Team").get_by_role("link", name="Team").click()
    expect(row(other, "plan.txt")).to_be_visible()
    other.locator("#upload-files").set_input_files([{"name": "mine.txt", "mimeType": "text/plain", "buffer": b"x"}])
    expect(other.locator(".transfer-state")).to_have_text(re.compile(r"^Failed: you are a viewer here"))
    expect(other.locator("#errors")).to_contain_text("you are a viewer here")
    assert names_on_server(pages.server, owner, "/Team") == ["plan.txt"]

    # Owner: editor now, then removed; a link to the file with a password.
    page.get_by_role("button", name="Share Team").click()
    dialog.get_by_label(f"Role of {friend.name}").select_option("editor")
    expect(dialog.get_by_label(f"Role of {friend.name}")).to_have_value("editor")
    dialog.get_by_role("button", name=f"Remove {friend.name}").click()
    expect(dialog.get_by_label(f"Role of {friend.name}")).to_have_count(0)
    page.keyboard.press("Escape")
    row(page, "Team").get_by_role("link", name="Team").click()
    page.get_by_role("button", name="Share plan.txt").click()
    dialog = page.get_by_role("dialog", name="Share plan.txt")
    dialog.get_by_label("Expiry").select_option("7d")
    dialog.get_by_label("Password (optional)").fill("open sesame")
    dialog.get_by_role("button", name="Create link").click()
    url = dialog.get_by_label(re.compile("^New link")).input_value()
    assert re.search(r"#/link/satl_[A-Za-z0-9_-]{43}$", url), url
    expect(dialog.locator("li.link")).to_contain_text("with password, expires")

    stranger = pages.open()  # a fresh context: no account, no session
    stranger.goto(url)
    stranger.get_by_label("Link password").fill("wrong password")
    stranger.get_by_role("button", name="Open").click()
    expect(stranger.get_by_text("That password is not right")).to_be_visible()
    stranger.get_by_label("Link password").fill("open sesame")
    stranger.get_by_role("button", name="Open").click()
    with stranger.expect_download() as info:
        stranger.get_by_role("button", name="Download plan.txt").click()
    info.value.save_as(tmp_path / "plan.txt")
    assert (tmp_path / "plan.txt").read_bytes() == b"the plan\n"

    dialog.locator("li.link").get_by_role("button", name=re.compile("^Revoke link")).click()
    expect(dialog.get_by_text("No links yet.")).to_be_visible()
    gone = pages.open()
    gone.goto(url)
    expect(gone.get_by_text("This link does not work")).to_be_visible()

    # Without a password the browser's download manager fetches the link's own URL (streamed to
    # disk), not a copy the page read into memory (a blob: URL).
    dialog.get_by_label("Password (optional)").fill("")
    dialog.get_by_role("button", name="Create link").click()
    new_link = dialog.get_by_label(re.compile("^New link"))
    expect(new_link).not_to_have_value(url)  # the revoked link's URL shows until the server answers
    plain = pages.open()
    plain.goto(new_link.input_value())
    with plain.expect_download() as info:
        plain.get_by_role("button", name="Download plan.txt").click()
    assert re.search(r"/api/v1/public/links/satl_[A-Za-z0-9_-]{43}/content$", info.value.url), info.value.url
    info.value.save_as(tmp_path / "plan-again.txt")
    assert (tmp_path / "plan-again.txt").read_bytes() == b"the plan\n"

def test_share_a_file_with_a_person_live_and_a_unicode_link_password(pages: Pages, tmp_path: Path) -> None:
    pages.allow("status of 401")  # the link page before its password
    owner, friend = pages.new_user(), pages.new_user()
    first = upload_bytes(pages.server, owner, "/Docs/report.txt", b"numbers v1\n")
    other = pages.signed_in(friend)  # on screen before the share: it arrives live
    expect(other.get_by_role("heading", name="All files")).to_be_visible()
    page = pages.signed_in(owner)
    row(page, "Docs").get_by_role("link", name="Docs").click()
    page.get_by_role("button", name="Share report.txt").click()
    dialog = page.get_by_role("dialog", name="Share report.txt")
    dialog.get_by_label("Add a person (user name)").fill(friend.name)
    dialog.get_by_label("Role", exact=True).select_option("editor")
    dialog.get_by_role("button", name="Add person").click()
    expect(dialog.get_by_label(f"Role of {friend.name}")).to_have_value("editor")
    dialog.get_by_label("Password (optional)").fill("pässwörd-日本")
    dialog.get_by_role("button", name="Create link").click()
    url = dialog.get_by_label(re.compile("^New link")).input_value()
    page.keyboard.press("Escape")
    expect(row(page, "report.txt").get_by_text("shared")).to_be_visible()

    # The friend finds the file at their root; the owner's new version reaches their screen live.
    expect(row(other, "report.txt").get_by_text("shared · editor")).to_be_visible()
    expect(row(other, "report.txt")).to_contain_text("11 B")
    upload_bytes(pages.server, owner, "/Docs/report.txt", b"numbers v2, longer\n", parent_rev=first["rev"])
    expect(row(other, "report.txt")).to_contain_text("19 B")
    expect(row(other, "report.txt").get_by_text("shared · editor")).to_be_visible()

    stranger = pages.open()
    stranger.goto(url)
    stranger.get_by_label("Link password").fill("pässwörd-日本")
    stranger.get_by_role("button", name="Open").click()
    with stranger.expect_download() as info:
        stranger.get_by_role("button", name="Download report.txt").click()
    # A signed URL stands for the password: the download manager streams it, not the page's memory.
    assert re.search(r"/api/v1/public/links/satl_[A-Za-z0-9_-]{43}/content\?.*sig=", info.value.url), info.value.url
    info.value.save_as(tmp_path / "report.txt")
    assert (tmp_path / "report.txt").read_bytes() == b"numbers v2, longer\n"
