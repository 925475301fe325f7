"""flareport_agent."""
