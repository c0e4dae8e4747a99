"""The emulated Graph fixtures of tests/graph, for the quota state tests."""

from tests.graph.conftest import clock, graph_state, service

__all__ = ["clock", "graph_state", "service"]
