"""The browser tool against the project's site/ served on 127.0.0.1: real Chromium, no mocks."""

from __future__ import annotations

import asyncio
import os
import signal

from adp.app.site_server import SiteServer
from adp.runtimes.tools.browser import BrowserOptions, BrowserPool, truncate


async def test_search_form_finds_an_item(site, pool):
    async with pool.session() as b:
        first = await b.goto(site)
        assert first.ok and "ADP Test Shop" in first.observation and "HTTP 200" in first.observation
        filled = await b.fill("Search the catalogue", "kettle")
        assert filled.ok and "'kettle'" in filled.observation
        result = await b.click("Search")
        assert result.ok, result.observation
        assert "search.html?q=kettle" in result.observation
        assert "Found 2 items" in result.observation
        assert "Quantum Kettle" in result.observation and "Copper Kettle" in result.observation
        item = await b.click("Copper Kettle")
        assert item.ok and "$64.00" in item.observation and "3 left" in item.observation
        back = await b.back()
        assert back.ok and "Found 2 items" in back.observation
        # Enter in the field submits the form too
        await b.fill("#q", "lantern")
        pressed = await b.press("Enter", "#q")
        assert (
            pressed.ok
            and "Camping Lantern" in pressed.observation
            and "Found 1 item" in pressed.observation
        )


async def test_paging_to_page_three(site, pool):
    async with pool.session() as b:
        page1 = await b.goto(site + "list/page1.html")
        assert "Page 1 of 3" in page1.observation and "Brass Telescope" in page1.observation
        page2 = await b.click("Next page")
        assert "Page 2 of 3" in page2.observation and "Copper Kettle" in page2.observation
        page3 = await b.click("Next page")
        assert page3.ok and "Page 3 of 3" in page3.observation
        assert "ZEBRA-42" in page3.observation
        assert "Next page" not in page3.observation.split("\n\n", 1)[1]  # the last page has none
        prev = await b.click("Previous page")
        assert "Page 2 of 3" in prev.observation
        links = await b.extract_links()
        assert links.ok
        assert f"- Next page -> {site}list/page3.html" in links.observation
        assert f"- Home -> {site}index.html" in links.observation


async def test_form_shows_confirmation_with_the_values(site, pool):
    async with pool.session() as b:
        await b.goto(site)
        contact = await b.click("Contact us")
        assert "Contact us" in contact.observation and "contact.html" in contact.observation
        assert (await b.fill("Name", "Ada Lovelace")).ok
        assert (await b.fill("Email", "ada@example.org")).ok
        assert (await b.type("message", "Please send the catalogue")).ok  # by name attribute
        sent = await b.click("Send message")
        assert sent.ok, sent.observation
        assert (
            "Thank you, Ada Lovelace! We received your message \u201cPlease send the catalogue"
            "\u201d and will reply to ada@example.org."
        ) in sent.observation
        again = await b.read_page()
        assert again.ok and "thanks.html?name=Ada+Lovelace" in again.observation


async def test_each_task_gets_a_fresh_context(site, pool):
    async with pool.session() as first:
        await first.goto(site + "thanks.html?name=Grace&email=g%40x.org&message=hi")
        home = await first.goto(site)
        assert "Welcome back, Grace!" in home.observation  # storage works within a task
        assert "adp_visitor=Grace" in await first.page.evaluate("document.cookie")
    async with pool.session() as second:
        home = await second.goto(site)
        assert home.ok and "Welcome back" not in home.observation
        assert await second.page.evaluate("document.cookie") == ""
        assert await second.page.evaluate("localStorage.length") == 0


async def test_errors_become_observations(site, pool):
    async with pool.session() as b:
        nothing = await b.back()
        assert not nothing.ok and nothing.error == "no previous page"
        await b.goto(site)
        missing = await b.click("No such button anywhere")
        assert not missing.ok and missing.error == "element not found"
        assert "No element matching 'No such button anywhere'" in missing.observation
        no_field = await b.fill("Shoe size", "42")
        assert not no_field.ok and no_field.error == "element not found"
        not_found = await b.goto(site + "missing.html")
        assert not not_found.ok and not_found.error == "HTTP 404" and "404" in not_found.observation
        with SiteServer() as other:  # a port that was listening a moment ago and is not now
            pass
        refused = await b.goto(other)  # (the egress proxy's answer: nothing listens there)
        assert not refused.ok and "could not reach" in refused.observation
        assert "Connection refused" in refused.observation
        bad_dir = await b.scroll("sideways")
        assert not bad_dir.ok
        after = await b.goto(site)  # the task goes on after each failure
        assert after.ok and "ADP Test Shop" in after.observation


async def test_read_page_truncates_with_a_marker(site, pool):
    async with pool.session(BrowserOptions(text_limit=40)) as b:
        await b.goto(site + "list/page1.html")
        page = await b.read_page()
        body = page.observation.split("\n\n", 1)[1]
        assert body.startswith("All items")
        full = await b.page.evaluate("document.body.innerText")
        assert body == truncate(full.strip(), 40)
        assert body.endswith(f"[truncated: {len(full.strip()) - 40} more characters]")
        scrolled = await b.scroll("bottom")
        assert scrolled.ok and "px page" in scrolled.observation


async def test_a_killed_browser_is_replaced(site):
    async with BrowserPool(size=1) as pool:
        async with pool.session() as running:
            assert (await running.goto(site + "list/page2.html")).ok
            (pid,) = await pool.browser_pids()
            gone = asyncio.Event()
            running.context.browser.on("disconnected", lambda _b: gone.set())
            os.kill(pid, signal.SIGKILL)
            await asyncio.wait_for(gone.wait(), 60)
            # the task that was running goes on: a new browser, reopened at its last page
            recovered = await running.read_page()
            assert recovered.ok, recovered.observation
            assert recovered.observation.startswith("[the browser had crashed")
            assert "Page 2 of 3" in recovered.observation
        async with pool.session() as next_task:
            result = await next_task.goto(site + "contact.html")
            assert result.ok and "Contact us" in result.observation
        (new_pid,) = await pool.browser_pids()
        assert new_pid != pid and pool.launches == 2


async def test_a_browser_killed_between_tasks_is_replaced(site):
    async with BrowserPool(size=1) as pool:
        async with pool.session() as b:
            assert (await b.goto(site)).ok
        (pid,) = await pool.browser_pids()
        os.kill(pid, signal.SIGKILL)  # no waiting: the next task may find it dying
        async with pool.session() as b:
            result = await b.goto(site + "list/page3.html")
            if not result.ok:  # the kill landed mid-action: reported, then the next one works
                assert "browser crashed or closed" in result.observation
                result = await b.goto(site + "list/page3.html")
            assert result.ok and "ZEBRA-42" in result.observation
        assert pool.launches == 2
