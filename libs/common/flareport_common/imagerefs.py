"""Docker image references in canonical form, and whether one names the same image as another.

The agent runs only its configured ``CLOUDFLARED_IMAGE`` and accepts a command's image only when it names that
image (``flareport_agent.images``); the API checks a redeploy's image the same way against the image the agent
reports running, so an admin hears at once that another image would be refused, instead of from a failed ack.

References are compared in Docker's canonical form, so spellings of one reference match: ``cloudflare/cloudflared:1``
is ``docker.io/cloudflare/cloudflared:1`` and ``index.docker.io/cloudflare/cloudflared:1``; ``busybox:1`` is
``docker.io/library/busybox:1``. A tag is not a digest: with a configured ``repo:tag``, ``repo@sha256:...`` (or
``repo:tag@sha256:...``, which Docker resolves by the digest) is refused. With a configured ``repo@sha256:<d>`` (or
``repo:tag@sha256:<d>``), ``repo@sha256:<d>`` is accepted with or without that tag; another tag is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True, slots=True)
class ImageRef:
    repository: str  # with its registry: docker.io/library/busybox, localhost/x, registry:5000/a/b
    tag: str | None
    digest: str | None


def parse(reference: str) -> ImageRef:
    """A reference in canonical form (Docker's rules: the first path component is a registry when it has a dot or
    a port, or is ``localhost``; Docker Hub names get ``docker.io/`` and single names ``library/``)."""
    rest, _, digest = reference.strip().partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag: str | None = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    if registry.lower() in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return ImageRef(f"{registry.lower()}/{path}", tag, digest.lower() or None)


def allowed(requested: str, configured: str) -> bool:
    """True when ``requested`` names the configured image (see the module's rules)."""
    want, got = parse(configured), parse(requested)
    if got.repository != want.repository:
        return False
    if want.digest is not None:
        return got.digest == want.digest and got.tag in (None, want.tag)
    if got.digest is not None:
        return False
    return (got.tag or "latest") == (want.tag or "latest")
