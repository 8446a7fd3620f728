"""Where webhooks may go: https, and only to public addresses.

A merchant's ``webhook_url`` is checked when it is set (``url_problem``, then the addresses its
name resolves to) and again at every delivery, after DNS: every address the name resolves to
must be public, and the request then goes to the address that was checked (see
``integrations/webhooks.py``). ``WEBHOOK_ALLOW_PRIVATE`` lifts both rules for
development and tests (receivers on 127.0.0.1 over http).

This module is pure: callers resolve names and hand the addresses in.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that never leave the machine or the local network, whatever DNS says.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address a packet to it
# reaches through the translator. Python calls the whole range global.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# The deprecated IPv4-compatible addresses ``::a.b.c.d`` (RFC 4291; ``::`` and ``::1`` are
# themselves): some stacks still send them as IPv4, no receiver uses them.
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Ranges refused whatever they hold: NAT64 for local use (RFC 8215), whose translator is some
# network's own, and the deprecated site-local fec0::/10 (RFC 3879), private in all but name.
_REFUSED_V6 = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "reserved"),
    (ipaddress.IPv6Network("fec0::/10"), "private"),
)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``ip`` really goes to, if ``ip`` is a way of writing one:
    IPv4-mapped, 6to4 (2002::/16), NAT64 (64:ff9b::/96)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress | str) -> str | None:
    """Why webhooks may not go to ``address`` (``"loopback"``, ``"private"`` …), or None.

    An IPv6 address that embeds an IPv4 address is judged by that address
    (``64:ff9b::a9fe:a9fe`` reaches 169.254.169.254: link-local); IPv4-compatible addresses by
    theirs, and refused even when it is public; Teredo, local-use NAT64 and site-local
    addresses are refused outright.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return "reserved"
        for network, kind in _REFUSED_V6:
            if ip in network:
                return kind
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return address_refusal(embedded)
        if ip in _V4_COMPATIBLE and int(ip) > 1:
            v4 = ipaddress.IPv4Address(int(ip))
            return address_refusal(v4) or "reserved"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:  # 169.254.0.0/16 (cloud metadata at 169.254.169.254), fe80::/10
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:  # 10/8, 172.16/12, 192.168/16, fc00::/7 (ULA) and the like
        return "private"
    if not ip.is_global:  # shared address space 100.64/10, reserved and documentation ranges
        return "reserved"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def url_problem(url: str, *, allow_private: bool, local_names: bool = True) -> str | None:
    """What is wrong with ``url`` before any DNS: its scheme, a literal address that is not
    public or (``local_names``) a name that is local by its spelling (``localhost``,
    ``*.internal``…). None when it may be used: its name still has to resolve to public
    addresses, which deliveries check whatever the name."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https URL"
    if allow_private:
        return None
    if parts.scheme != "https":
        return "must be an https URL"
    host = host.rstrip(".").lower()
    literal = literal_address(host)
    if literal is not None:
        refusal = address_refusal(literal)
        return f"must be a public address; {literal} is {refusal}" if refusal else None
    if local_names and (host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host):
        return f"must be a public address; {host} is a local name"
    return None


def addresses_problem(host: str, addresses: list[str], *, allow_private: bool) -> str | None:
    """Every address ``host`` resolved to must be public; the first that is not is named."""
    if allow_private:
        return None
    for address in addresses:
        refusal = address_refusal(address.split("%", 1)[0])
        if refusal:
            return f"must be a public address; {host} resolves to {address}, which is {refusal}"
    return None
