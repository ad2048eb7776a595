"""Getting the agent onto gateways: board profiles, service unit, first-boot files, provisioning."""
