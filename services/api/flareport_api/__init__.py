"""Flareport's HTTP API: the agent gateway and the admin API, over Redis Streams (see docs/api.md)."""
