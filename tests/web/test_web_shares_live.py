"""A shared folder in the web app updates live for its members: changes by the owner appear
without reload (with the member's own mount path), members viewing it see each other, and a
removed member is told that access ended and leaves the folder view."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from tests.web.conftest import Pages, screenshot, upload_bytes
from tests.web.test_web import row


def test_member_sees_owner_changes_live_then_loses_access(pages: Pages) -> None:
    owner, friend = pages.new_user(), pages.new_user()
    upload_bytes(pages.server, owner, "/Team/plan.txt", b"the plan\n")
    friend.api(pages.server, "POST", "/api/v1/mkdir", json={"path": "/Team"})  # so the mount is "/Team (2)"
    friend_id = friend.api(pages.server, "GET", "/api/v1/account").json()["id"]
    owner.api(pages.server, "POST", "/api/v1/shares", json={"path": "/Team", "members": [
        {"user": friend.name, "role": "editor"}]})
    shares = owner.api(pages.server, "GET", "/api/v1/shares").json()["shares"]
    ns = next(s["ns"] for s in shares if s["path"] == "/Team")

    member = pages.signed_in(friend)
    row(member, "Team (2)").get_by_role("link", name="Team (2)").click()
    expect(member.get_by_role("heading", name="Team (2)")).to_be_visible()
    expect(row(member, "plan.txt")).to_be_visible()

    # Presence meets in the shared namespace: the owner, viewing its /Team, sees the member.
    boss = pages.signed_in(owner)
    row(boss, "Team").get_by_role("link", name="Team").click()
    expect(boss.locator(".presence .avatar")).to_have_count(1)
    expect(member.locator(".presence .avatar")).to_have_count(1)

    # Another device of the owner uploads into the folder: it appears in the member's listing.
    started = time.monotonic()
    upload_bytes(pages.server, owner, "/Team/new.txt", b"fresh\n")
    expect(row(member, "new.txt")).to_be_visible(timeout=2_000)
    assert time.monotonic() - started < 4  # the upload itself included
    upload_bytes(pages.server, owner, "/Team/Sub/deep.txt", b"deep\n")  # a folder made by the upload
    expect(row(member, "Sub")).to_be_visible(timeout=2_000)
    screenshot(member, "shared-folder-live")

    # Removed: the member is told, and leaves the folder for its parent.
    owner.api(pages.server, "DELETE", f"/api/v1/shares/{ns}/members/{friend_id}")
    expect(member.locator("#errors")).to_contain_text("Your access to the shared folder /Team (2) ended.")
    expect(member.get_by_role("heading", name="All files")).to_be_visible()
    expect(row(member, "Team (2)")).to_have_count(0)
    expect(row(member, "Team")).to_be_visible()  # the member's own folder stays
    expect(boss.locator(".presence .avatar")).to_have_count(0)  # the server ended the member's presence
