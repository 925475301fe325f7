"""A Podman API service with its own storage, run root and events file: one simulated Docker host per instance.

``LocalPodman`` uses the machine's default storage, which every Podman service on the machine shares: two of them
would see each other's containers (and events), so they could not stand for two hosts, and containers other tests
start would leak into the agents under test. Here each instance gets its own ``storage.conf`` (graph root and run
root under its work directory) and its own ``tmp_dir`` (where the file events logger writes).
"""

from __future__ import annotations

import os
from pathlib import Path

from flareport_cli.localpodman import CONTAINERS_CONF, LocalPodman


class IsolatedPodman(LocalPodman):
    def __init__(self, workdir: Path, *, engine_conf: str = "") -> None:
        """``engine_conf``: more lines for the ``[engine]`` table of containers.conf."""
        super().__init__(workdir)
        self._isolated_conf = workdir / "isolated-containers.conf"
        self._storage_conf = workdir / "storage.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        self._isolated_conf.write_text(CONTAINERS_CONF + f'tmp_dir = "{workdir / "tmp"}"\n' + engine_conf)
        self._storage_conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{workdir / "graph"}"\nrunroot = "{workdir / "run"}"\n'
        )

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self._isolated_conf),
            "CONTAINERS_STORAGE_CONF": str(self._storage_conf),
        }

    def remove_all(self) -> None:
        """Force-remove every container of this host (cleanup, also after a failed test)."""
        self.podman("rm", "--all", "--force", "--time", "0", check=False)

    def close(self) -> None:
        self.remove_all()
        self.stop()
