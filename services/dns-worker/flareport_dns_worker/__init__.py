"""flareport_dns_worker."""
