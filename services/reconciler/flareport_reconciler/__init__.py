"""flareport_reconciler."""
