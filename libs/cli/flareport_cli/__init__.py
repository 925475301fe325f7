"""flareport_cli."""
