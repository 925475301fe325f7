"""flareport_common."""
