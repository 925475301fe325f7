"""Origin service formats and the other single-value validators."""

from __future__ import annotations

import re

import pytest

from flareport_agent import values


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("http://web", "http://web"),
        ("http://web:8080", "http://web:8080"),
        ("HTTPS://Web.internal:443/", "https://Web.internal:443"),
        ("http://10.0.0.5:80", "http://10.0.0.5:80"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("tcp://db:5432", "tcp://db:5432"),
        ("ssh://box:22", "ssh://box:22"),
        ("rdp://win:3389", "rdp://win:3389"),
        ("unix:/run/app.sock", "unix:/run/app.sock"),
        ("unix+tls:/run/app.sock", "unix+tls:/run/app.sock"),
        ("http_status:404", "http_status:404"),
        ("hello_world", "hello_world"),
        ("Bastion", "bastion"),
        ("http://my_container:80", "http://my_container:80"),
    ],
)
def test_accepted_services(raw: str, canonical: str) -> None:
    assert values.parse_service(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://web:80/app", "must not contain a path ('/app')"),
        ("tcp://db", "needs a port"),
        ("ftp://files:21", "unsupported service"),
        ("web:80", "unsupported service"),
        ("http://web:99999", "outside 1-65535"),
        ("http://web:port", "invalid port"),
        ("http://user@web:80", "scheme://host[:port] only"),
        ("http://web:80?x=1", "scheme://host[:port] only"),
        ("http_status:42", "100-599"),
        ("unix:relative.sock", "absolute socket path"),
        ("http://999.1.1.1:80", "invalid IPv4"),
        ("http://[::zz]:80", "invalid IPv6"),
        ("http://:80", "has no host"),
    ],
)
def test_rejected_services(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        values.parse_service(raw)


@pytest.mark.parametrize("raw", ["true", "1", "t", "yes", "TRUE", " Yes "])
def test_dockflare_true_values(raw: str) -> None:
    assert values.parse_bool(raw) is True


@pytest.mark.parametrize("raw", ["false", "0", "f", "no"])
def test_false_values(raw: str) -> None:
    assert values.parse_bool(raw) is False


def test_durations_and_lists() -> None:
    assert values.parse_duration("24h") == "24h"
    assert values.parse_duration("1h30m") == "1h30m"
    with pytest.raises(ValueError, match="duration"):
        values.parse_duration("1 day")
    assert values.parse_list(" a, ,b ,") == ("a", "b")
    assert values.parse_seconds("0") == 0
    with pytest.raises(ValueError, match="at most"):
        values.parse_seconds(str(10**9))
