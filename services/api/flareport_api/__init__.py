"""flareport_api."""
