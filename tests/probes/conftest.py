"""The emulator with every send path, and clients for it (tests/support/send_paths.py)."""

from tests.support.send_paths import closed_port, control, emulator, graph, silent_port

__all__ = ["closed_port", "control", "emulator", "graph", "silent_port"]
