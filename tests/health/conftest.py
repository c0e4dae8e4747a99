"""The emulator with every send path serves the service-health tests too."""

from tests.support.send_paths import closed_port, control, emulator, graph, silent_port

__all__ = ["closed_port", "control", "emulator", "graph", "silent_port"]
