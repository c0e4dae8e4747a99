"""A local stand-in for the parts of Microsoft 365 the exporter talks to (tests and demo)."""
