"""flareport_cfemu."""
