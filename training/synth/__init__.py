"""Built-in data: synthetic gateway traffic (pcap) and sensor telemetry (CSV) with ground truth."""
