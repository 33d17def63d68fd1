"""The browser's egress policy (runtimes/tools/egress.py, egress_proxy.py): real Chromium,
steered to a loopback service and to the cloud metadata address through redirects, a
subresource and HTTPS, is refused every time -- the loopback service never sees a request --
and says so in its observation, while an allow-listed local site works; the policy's decisions
on addresses; the proxy connects to the address it checked, not to the name again."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest
from aiohttp import web

from adp.runtimes.tools.browser import BrowserPool
from adp.runtimes.tools.egress import EgressConfigError, EgressPolicy, internal
from adp.runtimes.tools.egress_proxy import REFUSED_HEADER, EgressProxy

METADATA_URL = "http://169.254.169.254/latest/meta-data/"


def ip(text: str):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address (IPv6)"),
        ("100.100.100.200", "metadata address (Alibaba)"),
        ("192.0.0.192", "metadata address (Oracle)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),
        ("224.0.0.251", "multicast"),
        ("::ffff:127.0.0.1", "loopback address (inside ::ffff:7f00:1)"),
        ("64:ff9b::a9fe:a9fe", "the cloud metadata address (inside"),  # NAT64
        ("2002:a00:1::1", "private address (inside"),  # 6to4 of 10.0.0.1
    ],
)
def test_internal_addresses_are_refused_by_default(address, why):
    decision = EgressPolicy().decide("h", 80, [ip(address)])
    assert not decision.allowed and why in decision.reason
    assert why in internal(ip(address))


def test_public_addresses_and_the_allow_list():
    policy = EgressPolicy()
    assert policy.decide("example.com", 443, [ip("93.184.215.14")]).allowed
    assert policy.decide("example.com", 443, [ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c")]).allowed
    assert not policy.decide("nowhere", 80, []).allowed
    # a name with a public and a private address: only the public one is connected to
    mixed = policy.decide("mixed", 80, [ip("10.0.0.1"), ip("93.184.215.14")])
    assert mixed.allowed and mixed.address == ip("93.184.215.14")
    allow = EgressPolicy.of(
        "public", "127.0.0.1:8090, 10.20.0.0/16, [::1]:9000, docs.corp.example, *.lab.example:443"
    )
    assert allow.decide("127.0.0.1", 8090, [ip("127.0.0.1")]).allowed
    assert not allow.decide("127.0.0.1", 8091, [ip("127.0.0.1")]).allowed  # that port only
    assert allow.decide("db", 5432, [ip("10.20.3.4")]).allowed
    assert not allow.decide("db", 5432, [ip("10.21.3.4")]).allowed
    assert allow.decide("::1", 9000, [ip("::1")]).allowed
    assert allow.decide("DOCS.corp.example", 80, [ip("10.9.9.9")]).allowed  # the name vouched
    assert allow.decide("a.lab.example", 443, [ip("10.9.9.9")]).allowed
    assert not allow.decide("a.lab.example", 80, [ip("10.9.9.9")]).allowed
    assert not allow.decide("lab.example.evil", 443, [ip("10.9.9.9")]).allowed
    assert EgressPolicy.of("open").decide("x", 80, [ip("169.254.169.254")]).allowed
    with pytest.raises(EgressConfigError, match="'bad host!'"):
        EgressPolicy.of("public", "127.0.0.1, bad host!")
    with pytest.raises(EgressConfigError, match="bad port"):
        EgressPolicy.of("public", "10.0.0.1:99999")


# --------------------------------------------------------------------------- real Chromium


class Servers:
    """An allow-listed site that sends the browser elsewhere, and a loopback service the
    browser must never reach (it counts every request it gets)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.runners: list[web.AppRunner] = []

    async def start(self) -> Servers:
        async def secret(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.Response(text="INTERNAL SECRET")

        inside = web.Application()
        inside.router.add_route("*", "/{tail:.*}", secret)
        self.inside = await self._serve(inside)
        service = f"http://127.0.0.1:{self.inside}"

        def redirect(to: str):
            async def handler(_request: web.Request) -> web.Response:
                raise web.HTTPFound(to)

            return handler

        async def page(_request: web.Request) -> web.Response:
            body = (
                "<html><head><title>Harmless</title></head><body><p>A harmless page.</p>"
                f'<img src="{service}/pixel.png"></body></html>'
            )
            return web.Response(text=body, content_type="text/html")

        site = web.Application()
        site.router.add_get("/", page)
        site.router.add_get("/to-loopback", redirect(f"{service}/secret"))
        site.router.add_get("/to-localhost", redirect(f"http://localhost:{self.inside}/secret"))
        site.router.add_get("/to-metadata", redirect(METADATA_URL))
        self.site = await self._serve(site)
        return self

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        self.runners.append(runner)
        return tcp._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture(scope="module")
async def servers():
    s = await Servers().start()
    yield s
    await s.stop()


@pytest.fixture(scope="module")
async def guarded(servers):
    """Browsers that may reach the public internet and the allow-listed site, nothing else."""
    policy = EgressPolicy.of("public", f"127.0.0.1:{servers.site}")
    async with BrowserPool(size=1, egress=policy) as pool:
        yield pool


async def test_an_allow_listed_local_site_works(servers, guarded):
    async with guarded.session() as browser:
        opened = await browser.goto(f"http://127.0.0.1:{servers.site}/")
    assert opened.ok and "A harmless page." in opened.observation
    # the page's image on the loopback service was refused, and the observation says so
    assert "[refused by the browser's egress policy:" in opened.observation
    assert f"http://127.0.0.1:{servers.inside}/pixel.png (127.0.0.1 is a loopback" in (
        opened.observation
    )
    assert servers.hits == []


@pytest.mark.parametrize(
    ("path", "url", "reason"),
    [
        ("/to-loopback", "http://127.0.0.1:{inside}/secret", "127.0.0.1 is a loopback address"),
        ("/to-localhost", "http://localhost:{inside}/secret", "is a loopback address"),
        ("/to-metadata", METADATA_URL, "169.254.169.254 is the cloud metadata address"),
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused(servers, guarded, path, url, reason):
    async with guarded.session() as browser:
        went = await browser.goto(f"http://127.0.0.1:{servers.site}{path}")
    assert not went.ok
    assert went.error.startswith("refused by the browser's egress policy: ")
    assert reason in went.error
    target = url.format(inside=servers.inside)
    assert f"Refused by the browser's egress policy: {target}" in went.observation
    assert "INTERNAL SECRET" not in went.observation
    assert servers.hits == []


async def test_internal_addresses_are_refused_as_the_first_url_and_over_https(servers, guarded):
    async with guarded.session() as browser:
        for url in (
            f"http://127.0.0.1:{servers.inside}/",
            f"http://[::1]:{servers.inside}/",
            f"https://127.0.0.1:{servers.inside}/",  # a CONNECT tunnel, refused
            METADATA_URL,
        ):
            went = await browser.goto(url)
            assert not went.ok and "refused by the browser's egress policy" in went.error, url
            assert "INTERNAL SECRET" not in went.observation
        back = await browser.goto(f"http://127.0.0.1:{servers.site}/")  # the task goes on
        assert back.ok
    assert servers.hits == []


# --------------------------------------------------------------------------- the proxy itself


async def test_the_proxy_connects_to_the_address_it_checked(servers):
    """A made-up name the OS cannot resolve, which the proxy's resolver maps to the service:
    the request reaches the service only if the proxy connects to the checked address rather
    than resolving the name again; and refused where the address is not allowed."""
    names = {"rebind.test": [ip("127.0.0.1")]}

    async def resolver(host: str, port: int) -> list:
        return names[host]

    url = f"http://rebind.test:{servers.inside}/checked"
    allowed = EgressProxy(EgressPolicy.of("public", f"127.0.0.1:{servers.inside}"), resolver)
    refused = EgressProxy(EgressPolicy(), resolver)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url, proxy=await allowed.start()) as r:
                assert r.status == 200 and await r.text() == "INTERNAL SECRET"
            async with http.get(url, proxy=await refused.start()) as r:
                assert r.status == 403 and r.headers[REFUSED_HEADER] == "refused"
                assert "127.0.0.1 is a loopback address" in await r.text()
    finally:
        await allowed.close()
        await refused.close()
    assert servers.hits == ["/checked"]
    assert [(x.url, x.reason) for x in refused.refusals] == [
        (url, "127.0.0.1 is a loopback address")
    ]
    servers.hits.clear()
