"""m365-smtp-exporter: Prometheus exporter and throttling monitor for Microsoft 365 mail."""

__version__ = "0.1.0"
