"""Which cloudflared image the agent may run: only its own ``CLOUDFLARED_IMAGE``, whatever a command says.

A ``start_tunnel`` or ``restart_tunnel`` command may name an image. The agent runs containers with the host's Docker
API, so a compromised master (or a forged command) naming an image of its choosing would run that image, with the
tunnel token in its environment, on every host. The agent therefore accepts a command's image only when it is the
configured one, and always runs the configured reference itself. Changing the image is an operator's decision
on the host: set ``CLOUDFLARED_IMAGE`` and restart the agent (it replaces cloudflared at start).

References are compared in Docker's canonical form (``flareport_common.imagerefs``, shared with the API, which
checks a redeploy's image the same way).
"""

from __future__ import annotations

from flareport_common.imagerefs import ImageRef, allowed, parse

__all__ = ["ImageNotAllowed", "ImageRef", "allowed", "check_image", "parse"]


class ImageNotAllowed(Exception):
    """A command (or saved state) named an image other than the configured CLOUDFLARED_IMAGE."""

    def __init__(self, requested: str, configured: str) -> None:
        super().__init__(
            f"refused to run image {requested!r}: this agent runs only its configured cloudflared image "
            f"{configured!r} (CLOUDFLARED_IMAGE on the agent's host; change it there and restart the agent)"
        )
        self.requested = requested
        self.configured = configured


def check_image(requested: str | None, configured: str) -> str:
    """The image to run: the configured reference, as written. ``ImageNotAllowed`` when ``requested`` is another."""
    if requested is not None and not allowed(requested, configured):
        raise ImageNotAllowed(requested, configured)
    return configured
