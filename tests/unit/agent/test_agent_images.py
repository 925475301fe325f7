"""Which image references the agent takes for its configured CLOUDFLARED_IMAGE, and which master URLs are clear text."""

from __future__ import annotations

import pytest

from flareport_agent.agent import cleartext_master
from flareport_agent.images import ImageNotAllowed, allowed, check_image, parse

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("reference", "repository", "tag", "digest"),
    [
        ("cloudflare/cloudflared:2025.9.0", "docker.io/cloudflare/cloudflared", "2025.9.0", None),
        ("docker.io/cloudflare/cloudflared:1", "docker.io/cloudflare/cloudflared", "1", None),
        ("index.docker.io/cloudflare/cloudflared:1", "docker.io/cloudflare/cloudflared", "1", None),
        ("busybox:1", "docker.io/library/busybox", "1", None),
        ("docker.io/busybox:1", "docker.io/library/busybox", "1", None),
        ("localhost/x:latest", "localhost/x", "latest", None),
        ("registry.example:5000/a/b@" + DIGEST, "registry.example:5000/a/b", None, DIGEST),
        ("registry.example:5000/a/b:2@" + DIGEST, "registry.example:5000/a/b", "2", DIGEST),
    ],
)
def test_references_are_compared_in_canonical_form(
    reference: str, repository: str, tag: str | None, digest: str | None
) -> None:
    parsed = parse(reference)
    assert (parsed.repository, parsed.tag, parsed.digest) == (repository, tag, digest)


@pytest.mark.parametrize(
    ("requested", "configured", "ok"),
    [
        ("cloudflare/cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0", True),
        ("docker.io/cloudflare/cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0", True),
        ("library/busybox:1", "busybox:1", True),
        ("localhost/x", "localhost/x:latest", True),
        ("cloudflare/cloudflared:2025.9.1", "cloudflare/cloudflared:2025.9.0", False),
        ("cloudflare/cloudflared:latest", "cloudflare/cloudflared:2025.9.0", False),
        ("evil.example/cloudflare/cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0", False),
        ("localhost/cloudflare/cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0", False),
        ("cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0", False),
        # A tag is not a digest: a digest names whatever image its author likes under that repository.
        ("cloudflare/cloudflared@" + DIGEST, "cloudflare/cloudflared:2025.9.0", False),
        ("cloudflare/cloudflared:2025.9.0@" + DIGEST, "cloudflare/cloudflared:2025.9.0", False),
        ("cloudflare/cloudflared@" + DIGEST, "cloudflare/cloudflared@" + DIGEST, True),
        ("docker.io/cloudflare/cloudflared@" + DIGEST, "cloudflare/cloudflared:2025.9.0@" + DIGEST, True),
        ("cloudflare/cloudflared:2025.9.0@" + DIGEST, "cloudflare/cloudflared:2025.9.0@" + DIGEST, True),
        ("cloudflare/cloudflared:2025.9.0", "cloudflare/cloudflared:2025.9.0@" + DIGEST, False),
        ("cloudflare/cloudflared@" + OTHER_DIGEST, "cloudflare/cloudflared@" + DIGEST, False),
        ("cloudflare/cloudflared:other@" + DIGEST, "cloudflare/cloudflared:2025.9.0@" + DIGEST, False),
    ],
)
def test_only_the_configured_image_is_allowed(requested: str, configured: str, ok: bool) -> None:
    assert allowed(requested, configured) is ok


def test_check_runs_the_configured_reference_and_names_both_when_it_refuses() -> None:
    configured = "cloudflare/cloudflared:2025.9.0"
    assert check_image(None, configured) == configured
    assert check_image("docker.io/cloudflare/cloudflared:2025.9.0", configured) == configured
    with pytest.raises(ImageNotAllowed) as refused:
        check_image("attacker/miner:1", configured)
    assert "'attacker/miner:1'" in str(refused.value) and f"'{configured}'" in str(refused.value)
    assert "CLOUDFLARED_IMAGE" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "cleartext"),
    [
        ("http://master.example.com:8080", True),
        ("http://10.0.0.5:8080", True),
        ("http://192.0.2.10", True),
        ("http://[2001:db8::1]:8080", True),
        ("http://127.0.0.1.nip.io:8080", True),
        ("HTTP://10.0.0.5", True),
        ("https://master.example.com", False),
        ("https://10.0.0.5:8443", False),
        ("http://localhost:8080", False),
        ("http://LOCALHOST.:8080", False),
        ("http://127.0.0.1:8080", False),
        ("http://127.9.9.9", False),
        ("http://[::1]:8080", False),
        ("http://user:secret@localhost:8080", False),
    ],
)
def test_clear_text_master_urls(url: str, cleartext: bool) -> None:
    assert cleartext_master(url) is cleartext
