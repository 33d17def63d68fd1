"""The browser tool: a pool of Playwright-driven Chromium browsers, one fresh context per task.

    async with BrowserPool(size=2) as pool:            # launches Debian's /usr/bin/chromium
        async with pool.session() as browser:          # one task: a new BrowserContext
            result = await browser.goto("http://127.0.0.1:8090/")
            result.observation, result.ok               # what the page really shows

- Each session gets its own BrowserContext (created on its first action), so cookies,
  localStorage and cache never pass from one task to another. Contexts are spread over the
  pool's browsers (least loaded first).
- A browser that crashed or disconnected is replaced: the next context asked of its slot
  launches a new one. A session whose browser died reports the failed action as an error
  observation, and its next action opens a fresh context at the last URL it knew.
- Every action returns a ToolResult (observation text, ok, error) and never raises for
  page-level problems (element not found, navigation failure, timeouts, dead browser).
- Chromium that cannot be launched is no page-level problem: the pool raises
  DependencyUnavailable when its executable is missing, and DependencyOutage (with a probe that
  launches one) when a launch fails, so a runtime pauses instead of failing its tasks.

- Egress: every request a session's pages make goes through its own egress proxy
  (egress_proxy.py), which refuses private, loopback, link-local and cloud metadata addresses
  unless the allow-list names them (egress.py; settings browser.egress, browser.egress_allow).
  A refused request is noted in the observation of the action that made it.

Chromium: ADP_CHROMIUM (default /usr/bin/chromium), with --no-sandbox --disable-gpu
--disable-background-networking --disable-component-update --disable-sync --no-first-run;
Playwright adds --headless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    async_playwright,
)

from adp.core.errors import DependencyOutage, DependencyUnavailable
from adp.core.settings import settings
from adp.runtimes.tools.base import ToolResult
from adp.runtimes.tools.egress import EgressPolicy
from adp.runtimes.tools.egress_proxy import EgressProxy

log = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# WebRTC's UDP would not go through the egress proxy: none at all under a policy
NO_UNPROXIED_UDP = "--force-webrtc-ip-handling-policy=disable_non_proxied_udp"
# Playwright's proxy setting, with loopback addresses proxied too (Chromium sends them direct
# by default; Playwright adds this itself unless told otherwise by its environment)
PROXY_LOOPBACK = "<-loopback>"


def chromium_path() -> str:
    return settings().browser.chromium


@dataclass
class BrowserOptions:
    text_limit: int = 4000  # characters of page text in an observation
    nav_timeout: float = 20.0  # seconds for a navigation
    action_timeout: float = 5.0  # seconds for a click / fill / press to find its element
    max_links: int = 100  # links listed by extract_links
    viewport: tuple[int, int] = (1280, 800)


def truncate(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}\n[truncated: {len(text) - limit} more characters]"


class BrowserPool:
    """`size` Chromium processes shared by all tasks of a runtime; each task gets a context."""

    def __init__(
        self,
        size: int = 1,
        executable: str | None = None,
        headless: bool = True,
        args: list[str] | None = None,
        launch_timeout: float = 60.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        """`egress`: what the browsers may reach (default: the browser settings')."""
        self.size = max(1, int(size))
        self.executable = executable or chromium_path()
        if not os.access(self.executable, os.X_OK):
            raise DependencyUnavailable(
                f"Chromium not found at {self.executable} (browser.chromium, ADP_CHROMIUM): "
                "install it (apt-get install chromium) or point ADP_CHROMIUM at one"
            )
        self.headless = headless
        self.args = list(CHROMIUM_ARGS if args is None else args)
        if egress is None:
            conf = settings().browser
            egress = EgressPolicy.of(conf.egress, conf.egress_allow)
        self.egress = egress
        # the browsers' own proxy, for what no session's context covers (each session has one)
        self._proxy = EgressProxy(egress) if egress.mode != "open" else None
        self.launch_timeout = launch_timeout
        self.launches = 0  # browsers launched over the pool's life (replacements included)
        self._pw: Playwright | None = None
        self._browsers: list[Browser | None] = [None] * self.size
        self._load = [0] * self.size
        self._slot_locks = [asyncio.Lock() for _ in range(self.size)]
        self._start_lock = asyncio.Lock()

    async def start(self) -> BrowserPool:
        async with self._start_lock:
            if self._pw is None:
                if self._proxy is not None:
                    await self._proxy.start()
                self._pw = await async_playwright().start()
                try:
                    await asyncio.gather(*(self._browser(i) for i in range(self.size)))
                except BaseException:
                    await self._stop()
                    raise
        return self

    async def close(self) -> None:
        async with self._start_lock:
            await self._stop()

    async def _stop(self) -> None:
        browsers, self._browsers = self._browsers, [None] * self.size
        for browser in browsers:
            if browser is not None:
                try:
                    await browser.close()
                except Exception:  # already gone
                    pass
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None
        if self._proxy is not None:
            await self._proxy.close()

    async def __aenter__(self) -> BrowserPool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _browser(self, slot: int) -> Browser:
        """The slot's live browser, launching a new one if it is missing or disconnected."""
        async with self._slot_locks[slot]:
            browser = self._browsers[slot]
            if browser is not None and browser.is_connected():
                return browser
            if browser is not None:
                log.warning("browser %d disconnected; launching a replacement", slot)
            browser = await self._launch()
            self.launches += 1
            self._browsers[slot] = browser
            browser.on("disconnected", lambda b, s=slot: self._forget(s, b))
            return browser

    async def _launch(self) -> Browser:
        assert self._pw is not None, "BrowserPool.start() first"
        egress = {}
        if self._proxy is not None:
            egress = {"proxy": {"server": self._proxy.url, "bypass": PROXY_LOOPBACK}}
        try:
            return await self._pw.chromium.launch(
                executable_path=self.executable,
                headless=self.headless,
                args=[*self.args, NO_UNPROXIED_UDP] if egress else self.args,
                timeout=self.launch_timeout * 1000,
                **egress,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # playwright's Error or TimeoutError: Chromium did not come up
            raise DependencyOutage(
                f"the browser cannot start: {self.executable}: {_short(exc)}",
                "browser",
                self._probe,
            ) from exc

    async def _probe(self) -> None:
        """Return once a browser launches again (it is closed at once); raise while not."""
        await self.start()
        browser = await self._launch()
        await browser.close()

    def _forget(self, slot: int, browser: Browser) -> None:
        if self._browsers[slot] is browser:
            self._browsers[slot] = None

    async def new_context(
        self, options: BrowserOptions | None = None, proxy: str | None = None
    ) -> BrowserContext:
        """A fresh, isolated context on the least loaded browser (replaced if it died);
        `proxy`: the URL of the context's own egress proxy."""
        await self.start()
        opts = options or BrowserOptions()
        slot = min(range(self.size), key=lambda i: self._load[i])
        egress = {"proxy": {"server": proxy, "bypass": PROXY_LOOPBACK}} if proxy else {}
        for attempt in range(2):
            browser = await self._browser(slot)
            try:
                context = await browser.new_context(
                    viewport={"width": opts.viewport[0], "height": opts.viewport[1]}, **egress
                )
                break
            except Exception:
                if attempt or browser.is_connected():
                    raise
                self._forget(slot, browser)  # died between the check and the use
        context.set_default_timeout(opts.action_timeout * 1000)
        context.set_default_navigation_timeout(opts.nav_timeout * 1000)
        self._load[slot] += 1
        context.on("close", lambda _c, s=slot: self._load.__setitem__(s, max(0, self._load[s] - 1)))
        return context

    async def browser_pids(self) -> list[int]:
        """The OS process ids of the live browsers (from CDP SystemInfo.getProcessInfo)."""
        pids = []
        for browser in self._browsers:
            if browser is None or not browser.is_connected():
                continue
            cdp = await browser.new_browser_cdp_session()
            try:
                info = await cdp.send("SystemInfo.getProcessInfo")
            finally:
                await cdp.detach()
            pids += [p["id"] for p in info["processInfo"] if p["type"] == "browser"]
        return pids

    def session(self, options: BrowserOptions | None = None) -> BrowserSession:
        return BrowserSession(self, options)


_SELECTOR = re.compile(r"^(?:[#.\[/]|(?:css|xpath|text|role|id)=|[a-zA-Z][\w-]*[#.\[:])|>>")
_GONE = ("has been closed", "Target closed", "disconnected", "crashed", "Connection closed")


def _looks_like_selector(target: str) -> bool:
    return bool(_SELECTOR.search(target.strip()))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first.replace("Error: ", "", 1)[:300]


class BrowserSession:
    """One task's browser: a private context and its current page, created on first use."""

    def __init__(self, pool: BrowserPool, options: BrowserOptions | None = None) -> None:
        self.pool = pool
        self.options = options or BrowserOptions()
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self.last_url: str | None = None
        self.egress = EgressProxy(pool.egress) if pool.egress.mode != "open" else None

    async def __aenter__(self) -> BrowserSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        context, self.context, self.page = self.context, None, None
        if context is not None:
            try:
                await context.close()
            except Exception:  # its browser is gone already
                pass
        if self.egress is not None:
            await self.egress.close()

    def _alive(self) -> bool:
        return (
            self.page is not None
            and not self.page.is_closed()
            and self.context is not None
            and self.context.browser is not None
            and self.context.browser.is_connected()
        )

    async def _page(self) -> tuple[Page, str]:
        """The current page (a fresh context if there is none or its browser died), and a note
        to prefix the observation with when the session had to recover."""
        if self._alive():
            assert self.page is not None
            return self.page, ""
        recovering = self.context is not None
        await self.close()
        proxy = await self.egress.start() if self.egress is not None else None
        self.context = await self.pool.new_context(self.options, proxy)
        self.page = await self.context.new_page()
        if not recovering:
            return self.page, ""
        note = "[the browser had crashed; a new one was started"
        if self.last_url:
            try:
                await self.page.goto(self.last_url, wait_until="load")
                note += f" and reopened {self.last_url}"
            except Exception as exc:
                note += f"; reopening {self.last_url} failed: {_short(exc)}"
        return self.page, note + "]\n"

    async def _fresh_page(self, old: Page) -> None:
        if self.context is not None and self._alive():
            self.page = await self.context.new_page()
            await old.close()

    async def _act(self, what: str, action: Any) -> ToolResult:
        """Run `action(page)` -> ToolResult, turning every failure into an error observation
        and noting the requests the egress policy refused meanwhile."""
        seen = self.egress.refused if self.egress is not None else 0
        try:
            page, note = await self._page()
            result = await action(page)
            if not page.is_closed():
                self.last_url = page.url if page.url != "about:blank" else self.last_url
            if note:
                result.observation = note + result.observation
        except (asyncio.CancelledError, DependencyOutage):
            raise
        except Exception as exc:
            error = _short(exc)
            if any(g in str(exc) for g in _GONE) or not self._alive():
                error = f"browser crashed or closed during {what}: {error}"
                obs = f"{what} failed: {error}. A fresh browser will be used for the next action."
            else:
                obs = f"{what} failed: {error}"
            result = ToolResult(obs, ok=False, error=error)
        return self.egress.noted(result, seen) if self.egress is not None else result

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
