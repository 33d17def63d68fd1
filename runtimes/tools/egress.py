"""The browser's egress policy: which hosts and addresses Chromium may reach.

A web task's browser is steered by a model that reads untrusted pages, so by default it reaches
only the public internet: no private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback,
link-local (169.254/16, fe80::/10), shared, reserved or multicast address, and none of the
cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192) --
also when such an address hides inside an IPv6 one (::ffff:a.b.c.d, 6to4, NAT64, Teredo).
An explicit allow-list opens exceptions (the demo site on 127.0.0.1, an intranet host):

    ADP_BROWSER_EGRESS_ALLOW="127.0.0.1:8090, 10.20.0.0/16, docs.corp.example, *.corp.example:443"

Each entry is an address or a network (CIDR), or a host name (`*.` for every name under a
domain), each with an optional :port; IPv6 with a port in brackets ([::1]:8080). An address
entry allows connecting to that address; a host-name entry allows the name as the page asked
for it, whatever it resolves to (the operator vouches for that name). ADP_BROWSER_EGRESS=open
turns the policy off.

The decision is made on the address the browser will really connect to: the egress proxy
(egress_proxy.py) resolves the name once, checks every address, and connects to the one it
checked, so a name that answers with a public address first and a private one later (DNS
rebinding) gains nothing. Pure: resolution is the proxy's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from adp.core.errors import BadInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = {
    ipaddress.ip_address("169.254.169.254"): "the cloud metadata address",
    ipaddress.ip_address("169.254.170.2"): "the container metadata address",
    ipaddress.ip_address("fd00:ec2::254"): "the cloud metadata address (IPv6)",
    ipaddress.ip_address("100.100.100.200"): "the cloud metadata address (Alibaba)",
    ipaddress.ip_address("192.0.0.192"): "the cloud metadata address (Oracle)",
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressConfigError(BadInput):
    """An allow-list entry that is not an address, network or host name (names the entry)."""


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to somewhere else (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def internal(address: Address) -> str | None:
    """Why the browser must not reach `address` by default (None: a public address)."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        why = internal(inner)
        return f"{why} (inside {address})" if why else None
    if address in METADATA:
        return f"{address} is {METADATA[address]}"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class Rule:
    """One allow-list entry: a network or a host name (exact, or `*.` a domain), and a port."""

    network: Network | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> Rule:
        text = entry = entry.strip()
        port = None
        if text.startswith("["):  # [v6]:port
            inside, _, rest = text[1:].partition("]")
            text, port = inside, _port(entry, rest.removeprefix(":")) if rest else None
        elif text.count(":") == 1:
            text, _, given = text.partition(":")
            port = _port(entry, given)
        try:
            return cls(network=ipaddress.ip_network(text, strict=False), port=port)
        except ValueError:
            pass
        name = text.lower().rstrip(".")
        labels = name.removeprefix("*.").split(".")
        if not name or not all(label and label.replace("-", "").isalnum() for label in labels):
            raise EgressConfigError(
                f"browser egress allow-list entry {entry!r}: not an address, network or host name"
            )
        return cls(host=name, port=port)

    def allows_host(self, host: str, port: int) -> bool:
        if self.host is None or (self.port is not None and self.port != port):
            return False
        name = host.lower().rstrip(".")
        if self.host.startswith("*."):
            return name.endswith(self.host[1:])
        return name == self.host

    def allows_address(self, address: Address, port: int) -> bool:
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network

    def __str__(self) -> str:
        where = str(self.network) if self.network is not None else self.host
        return where if self.port is None else f"{where}:{self.port}"


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EgressConfigError(f"browser egress allow-list entry {entry!r}: bad port {text!r}")
    return int(text)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # why not (or which rule allowed it)
    address: Address | None = None  # the address to connect to (None: connect by name)


@dataclass(frozen=True)
class EgressPolicy:
    mode: Literal["public", "open"] = "public"
    allow: tuple[Rule, ...] = ()

    @classmethod
    def of(
        cls, mode: str = "public", allow: str | list[str] | tuple[str, ...] = ""
    ) -> EgressPolicy:
        """From the settings' forms: a comma-separated allow-list (or a list of entries)."""
        entries = allow.split(",") if isinstance(allow, str) else list(allow)
        if mode not in ("public", "open"):
            raise EgressConfigError(f"browser egress {mode!r}: public or open")
        return cls(mode, tuple(Rule.parse(e) for e in entries if e.strip()))  # type: ignore[arg-type]

    def allows_name(self, host: str, port: int) -> Rule | None:
        """The rule that allows this host name whatever it resolves to, if any."""
        return next((r for r in self.allow if r.allows_host(host, port)), None)

    def decide(self, host: str, port: int, addresses: list[Address]) -> Decision:
        """May the browser connect to `host`:`port`, which resolves to `addresses`? Allowed:
        the first address that passes (the one to connect to); refused: why the first one
        does not."""
        if self.mode == "open":
            return Decision(True, "the egress policy is open", addresses[0] if addresses else None)
        named = self.allows_name(host, port)
        if named is not None:
            return Decision(True, f"allowed by {named}", addresses[0] if addresses else None)
        reasons = []
        for address in addresses:
            rule = next((r for r in self.allow if r.allows_address(address, port)), None)
            if rule is not None:
                return Decision(True, f"allowed by {rule}", address)
            reason = internal(address)
            if reason is None:
                return Decision(True, "a public address", address)
            reasons.append(reason)
        return Decision(False, reasons[0] if reasons else f"{host} has no address")
