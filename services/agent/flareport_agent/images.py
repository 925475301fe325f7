"""Which cloudflared image the agent may run: only its own ``CLOUDFLARED_IMAGE``, whatever a command says.

A ``start_tunnel`` or ``restart_tunnel`` command may name an image. The agent runs containers with the host's Docker
API, so a compromised master (or a forged command) naming an image of its choosing would run that image, with the
tunnel token in its environment, on every host. The agent therefore accepts a command's image only when it is the
configured one, and always runs the configured reference itself. Changing the image is an operator's decision
on the host: set ``CLOUDFLARED_IMAGE`` and restart the agent (it replaces cloudflared at start).

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


class ImageNotAllowed(Exception):
    """A command (or saved state) named an image other than the configured CLOUDFLARED_IMAGE."""

    def __init__(self, requested: str, configured: str) -> None:
        super().__init__(
            f"refused to run image {requested!r}: this agent runs only its configured cloudflared image "
            f"{configured!r} (CLOUDFLARED_IMAGE on the agent's host; change it there and restart the agent)"
        )
        self.requested = requested
        self.configured = configured


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


def check_image(requested: str | None, configured: str) -> str:
    """The image to run: the configured reference, as written. ``ImageNotAllowed`` when ``requested`` is another."""
    if requested is not None and not allowed(requested, configured):
        raise ImageNotAllowed(requested, configured)
    return configured
