"""The probes' emulator fixtures serve the service-health tests too."""

from tests.probes.conftest import control, emulator, graph

__all__ = ["control", "emulator", "graph"]
