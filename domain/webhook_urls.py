"""Where webhooks may go: https, and only to public addresses.

A merchant's ``webhook_url`` is checked when it is set (``url_problem``, then the addresses its
name resolves to) and again at every delivery, after DNS: every address the name resolves to
must be public, and the request then goes to the address that was checked (see
``activities/webhooks/delivery.py``). ``WEBHOOK_ALLOW_PRIVATE`` lifts both rules for
development and tests (receivers on 127.0.0.1 over http).

This module is pure: callers resolve names and hand the addresses in.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that never leave the machine or the local network, whatever DNS says.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def address_refusal(address: IPAddress | str) -> str | None:
    """Why webhooks may not go to ``address`` (``"loopback"``, ``"private"`` …), or None."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return address_refusal(mapped)
        if ip.teredo is not None:
            return "reserved"
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
