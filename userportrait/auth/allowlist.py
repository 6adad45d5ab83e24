"""IP allow-lists (WeChat's IP 白名单) and the caller's address behind trusted proxies.

An app with no networks listed accepts any address. The address checked is the TCP peer,
unless the peer is one of ``trusted_proxies``: then ``X-Forwarded-For`` is read from the
right, skipping trusted proxies, and the first other address is the caller's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from userportrait.errors import InvalidRequest, IpNotAllowed

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """``10.0.0.0/8``, ``203.0.113.7`` (one host) or IPv6 forms; 47001 on anything else."""
    out: list[Network] = []
    for text in cidrs:
        for part in text.split(","):
            if not part.strip():
                continue
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise InvalidRequest(f"{part.strip()!r} is not an IP address or CIDR") from None
    return out


def _address(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _within(addr: Address, nets: Sequence[Network]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def is_within(address: str, nets: Sequence[Network]) -> bool:
    """Whether ``address`` (text; IPv4-mapped IPv6 as IPv4) lies in one of ``nets``."""
    addr = _address(address)
    return addr is not None and _within(addr, nets)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The caller's address: the peer, or the X-Forwarded-For hop left of trusted proxies."""
    addr = _address(peer or "")
    if addr is None or not trusted or not _within(addr, trusted) or not forwarded_for:
        return str(addr) if addr is not None else (peer or "")
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_addr = _address(hop)
        if hop_addr is None:
            return hop  # not an address: never in a list, so refused where one is set
        if not _within(hop_addr, trusted):
            return str(hop_addr)
    return str(_address(hops[0]) or hops[0]) if hops else str(addr)


def check(address: str, nets: Sequence[Network]) -> None:
    """Raise 40164 unless ``nets`` is empty or holds ``address``."""
    if not nets:
        return
    addr = _address(address)
    if addr is not None and _within(addr, nets):
        return
    if isinstance(addr, ipaddress.IPv4Address):  # WeChat names both forms (§4.3)
        raise IpNotAllowed(f"{addr} ipv6 ::ffff:{addr}")
    raise IpNotAllowed(address[:64] or "unknown")
