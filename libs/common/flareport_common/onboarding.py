"""What a new host needs to run an agent: a ``.env`` with the master's URL and the key, and a compose file.

Shown when a key is created (``POST /api/v1/keys``, ``flareport keys create``, the web UI's keys page), the only
time the key itself is shown. The compose file holds no secret: it reads both values from the ``.env`` next to it,
so it can be kept or shared as it is. Its services are the reviewed ``agent`` profile of the repository's
compose.yaml (tests/unit/test_onboarding.py compares them): the agent, locked down, reaching Docker only through
a docker-socket-proxy that allows the API sections the agent uses and nothing else, on an internal network; and
the external ``cloudflare-net`` network the agent's cloudflared and the published containers share.
"""

from __future__ import annotations

import re

from flareport_common.settings import DEFAULT_CLOUDFLARED_IMAGE

AGENT_IMAGE = "flareport-agent:latest"
_LABEL_NOISE = re.compile(r"[^\x20-\x7e]")


def env_file(master_url: str, key: str) -> str:
    """The ``.env`` lines for the agent's host."""
    return f"FLAREPORT_MASTER_URL={master_url}\nFLAREPORT_API_KEY={key}\n"


def agent_compose(label: str) -> str:
    """The compose file for the host the key labelled ``label`` is for (the label only goes into a comment)."""
    name = _LABEL_NOISE.sub("?", label)[:100]
    return f"""# Flareport agent for {name}.
# Next to it, a .env with FLAREPORT_MASTER_URL and FLAREPORT_API_KEY (shown once, with the key). Start with:
#   docker network create cloudflare-net && docker compose up -d   (or your CLOUDFLARED_NETWORK_NAME)
name: flareport-agent

services:
  docker-socket-proxy:
    image: tecnativa/docker-socket-proxy:v0.4.1
    restart: unless-stopped
    # Only the Docker API sections the agent uses (containers, events, networks, images, ping, version, info);
    # no exec, volumes, services or swarm. See docs/security.md, "Docker access".
    security_opt: ["no-new-privileges:true"]
    read_only: true
    tmpfs:
      - /tmp:size=1m
      - /run:size=1m
    environment:
      CONTAINERS: 1
      EVENTS: 1
      NETWORKS: 1
      IMAGES: 1
      POST: 1
      PING: 1
      VERSION: 1
      INFO: 1
      EXEC: 0
      VOLUMES: 0
      SERVICES: 0
      SWARM: 0
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock:ro
    networks: [agent-internal]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:2375/_ping | grep -q OK"]
      interval: 10s
      timeout: 3s
      retries: 3

  agent:
    image: ${{FLAREPORT_AGENT_IMAGE:-{AGENT_IMAGE}}}
    restart: unless-stopped
    user: "65532:65532"
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    read_only: true
    tmpfs:
      - /tmp:size=16m,mode=1777
    environment:
      FLAREPORT_MASTER_URL: ${{FLAREPORT_MASTER_URL:?set FLAREPORT_MASTER_URL in .env}}
      FLAREPORT_API_KEY: ${{FLAREPORT_API_KEY:?set FLAREPORT_API_KEY in .env}}
      DOCKER_HOST: tcp://docker-socket-proxy:2375
      CLOUDFLARED_IMAGE: ${{CLOUDFLARED_IMAGE:-{DEFAULT_CLOUDFLARED_IMAGE}}}
      CLOUDFLARED_NETWORK_NAME: ${{CLOUDFLARED_NETWORK_NAME:-cloudflare-net}}
      CLOUDFLARED_METRICS_PORT: ${{CLOUDFLARED_METRICS_PORT:-}}
      FLAREPORT_EXTERNAL_CLOUDFLARED: ${{FLAREPORT_EXTERNAL_CLOUDFLARED:-false}}
      # A master behind Cloudflare Access: a service token in the .env (both or neither; docs/agent.md).
      CF_ACCESS_CLIENT_ID: ${{CF_ACCESS_CLIENT_ID:-}}
      CF_ACCESS_CLIENT_SECRET: ${{CF_ACCESS_CLIENT_SECRET:-}}
      AGENT_DATA_DIR: /app/data
      LOG_LEVEL: ${{LOG_LEVEL:-info}}
      TZ: ${{TZ:-UTC}}
    volumes:
      - agent-data:/app/data
    depends_on:
      docker-socket-proxy:
        condition: service_healthy
    networks: [agent-internal, cloudflare-net]
    healthcheck:
      test:
        - CMD
        - python
        - -c
        - import urllib.request; urllib.request.urlopen('http://127.0.0.1:9103/healthz', timeout=3)
      interval: 15s
      timeout: 5s
      retries: 3

networks:
  agent-internal:
    internal: true
  cloudflare-net:
    name: ${{CLOUDFLARED_NETWORK_NAME:-cloudflare-net}}
    external: true

volumes:
  agent-data: {{}}
"""
