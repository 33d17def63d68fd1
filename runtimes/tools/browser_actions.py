"""What a task's browser can do with its page: the actions the agent calls (goto, click, fill,
press, scroll, read_page, extract_links, back) and how they find elements and summarise pages.
Each returns a ToolResult and never raises for page-level problems: BrowserSession._act (in
browser.py, which holds the contexts and their recovery) turns failures into observations.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Locator, Page

from adp.runtimes.tools.base import ToolResult

_SELECTOR = re.compile(r"^(?:[#.\[/]|(?:css|xpath|text|role|id)=|[a-zA-Z][\w-]*[#.\[:])|>>")


def _looks_like_selector(target: str) -> bool:
    return bool(_SELECTOR.search(target.strip()))


def truncate(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}\n[truncated: {len(text) - limit} more characters]"


class PageActions:
    """The actions of a session; the session provides `_act`, `options`, `context`, `page`."""

    options: Any
    context: Any
    page: Page | None

    async def _act(self, what: str, action: Any) -> ToolResult:  # BrowserSession's
        raise NotImplementedError

    async def _summary(self, page: Page, header: str = "") -> str:
        text = await page.evaluate("() => document.body ? document.body.innerText : ''")
        title = await page.title()
        head = f"{header}\n" if header else ""
        return (
            f"{head}URL: {page.url}\nTitle: {title}\n\n"
            f"{truncate(text.strip(), self.options.text_limit)}"
        )

    async def _settle(self, page: Page) -> Page:
        """After an action that may navigate or open a tab: follow the newest tab and wait
        until its document has loaded."""
        assert self.context is not None
        pages = [p for p in self.context.pages if not p.is_closed()]
        if pages and pages[-1] is not page:
            self.page = page = pages[-1]
        await page.wait_for_load_state("load")
        return page

    async def _locate(self, page: Page, target: str, field: bool) -> Locator | None:
        """The first visible element matching `target`: as a selector first when it looks like
        one, then by label/placeholder/name (fields) or link/button/text (clicks), then as a
        CSS selector or #id as a last resort."""
        target = target.strip()
        if field:
            by_text = [
                page.get_by_label(target, exact=True),
                page.get_by_label(target),
                page.get_by_placeholder(target),
                page.locator(f'[name="{target}"]'),
                page.get_by_role("textbox", name=target),
                page.get_by_role("searchbox", name=target),
            ]
        else:
            by_text = [
                page.get_by_role("link", name=target, exact=True),
                page.get_by_role("button", name=target, exact=True),
                page.get_by_role("link", name=target),
                page.get_by_role("button", name=target),
                page.get_by_text(target, exact=True),
                page.get_by_text(target),
            ]
        as_selector = [page.locator(target)]
        if re.fullmatch(r"[a-zA-Z][\w-]*", target):
            as_selector.append(page.locator(f"#{target}"))
        candidates = (
            as_selector + by_text if _looks_like_selector(target) else by_text + as_selector
        )
        for loc in candidates:
            try:
                n = await loc.count()
            except Exception:  # not a valid selector for this engine
                continue
            for i in range(min(n, 20)):
                if await loc.nth(i).is_visible():
                    return loc.nth(i)
            if n:
                return loc.first
        return None

    # ---- actions (each -> ToolResult) -------------------------------------------------------

    async def goto(self, url: str) -> ToolResult:
        async def go(page: Page) -> ToolResult:
            try:
                response = await page.goto(url, wait_until="load")
            except Exception:
                # Chromium then loads its error page into this tab, which would interrupt the
                # next navigation: carry on in a fresh tab of the same context.
                await self._fresh_page(page)
                raise
            status = response.status if response is not None else None
            summary = await self._summary(
                page, f"Opened {url}" + (f" (HTTP {status})" if status else "")
            )
            if status is not None and status >= 400:
                return ToolResult(summary, ok=False, error=f"HTTP {status}")
            return ToolResult(summary)

        return await self._act(f"goto {url}", go)

    async def click(self, target: str) -> ToolResult:
        async def click(page: Page) -> ToolResult:
            loc = await self._locate(page, target, field=False)
            if loc is None:
                return ToolResult(
                    f"No element matching {target!r} on {page.url}.",
                    ok=False,
                    error="element not found",
                )
            await loc.click()
            page = await self._settle(page)
            return ToolResult(await self._summary(page, f"Clicked {target!r}."))

        return await self._act(f"click {target!r}", click)

    async def fill(self, target: str, text: str) -> ToolResult:
        async def fill(page: Page) -> ToolResult:
            loc = await self._locate(page, target, field=True)
            if loc is None:
                return ToolResult(
                    f"No input field matching {target!r} on {page.url}.",
                    ok=False,
                    error="element not found",
                )
            await loc.fill(text)
            value = await loc.input_value()
            return ToolResult(f"Filled {target!r}; the field now contains {value!r}.")

        return await self._act(f"fill {target!r}", fill)

    type = fill  # "type" reads naturally to some models; same effect

    async def press(self, key: str, target: str | None = None) -> ToolResult:
        async def press(page: Page) -> ToolResult:
            if target:
                loc = await self._locate(page, target, field=True)
                if loc is None:
                    return ToolResult(
                        f"No element matching {target!r} on {page.url}.",
                        ok=False,
                        error="element not found",
                    )
                await loc.press(key)
            else:
                await page.keyboard.press(key)
            page = await self._settle(page)
            return ToolResult(await self._summary(page, f"Pressed {key}."))

        return await self._act(f"press {key}", press)

    async def scroll(self, direction: str = "down", amount: int | None = None) -> ToolResult:
        async def scroll(page: Page) -> ToolResult:
            d = (direction or "down").lower()
            if d not in ("up", "down", "top", "bottom"):
                return ToolResult(
                    f"Unknown scroll direction {direction!r} (up, down, top, bottom).",
                    ok=False,
                    error="bad argument",
                )
            step = int(amount) if amount else self.options.viewport[1]
            y, height, view = await page.evaluate(
                """([d, step]) => {
                    const el = document.scrollingElement || document.documentElement;
                    const to = d === 'top' ? 0 : d === 'bottom' ? el.scrollHeight
                             : window.scrollY + (d === 'up' ? -step : step);
                    window.scrollTo({top: to, behavior: 'instant'});
                    return [Math.round(window.scrollY), el.scrollHeight, window.innerHeight];
                }""",
                [d, step],
            )
            return ToolResult(
                f"Scrolled {d}: the view now shows pixels {y}-{min(y + view, height)} "
                f"of a {height}px page."
            )

        return await self._act(f"scroll {direction}", scroll)

    async def read_page(self) -> ToolResult:
        async def read(page: Page) -> ToolResult:
            return ToolResult(await self._summary(page))

        return await self._act("read_page", read)

    async def extract_links(self) -> ToolResult:
        async def links(page: Page) -> ToolResult:
            found = await page.evaluate(
                """() => Array.from(document.querySelectorAll('a[href]')).map(a =>
                       [(a.innerText || a.getAttribute('aria-label') || a.title || '').trim()
                          .replace(/\\s+/g, ' '), a.href])"""
            )
            lines = [
                f"- {text or '(no text)'} -> {href}"
                for text, href in found[: self.options.max_links]
            ]
            more = len(found) - len(lines)
            tail = f"\n[{more} more links not listed]" if more > 0 else ""
            return ToolResult(f"{len(found)} links on {page.url}:\n" + "\n".join(lines) + tail)

        return await self._act("extract_links", links)

    async def back(self) -> ToolResult:
        async def back(page: Page) -> ToolResult:
            response = await page.go_back(wait_until="load")
            if response is None and page.url in ("about:blank", self.last_url):
                return ToolResult(
                    f"There is no previous page (still at {page.url}).",
                    ok=False,
                    error="no previous page",
                )
            return ToolResult(await self._summary(page, "Went back."))

        return await self._act("back", back)
