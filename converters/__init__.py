"""Desktop tools that turn trained models into signed bundles a gateway can trust."""
