"""The training side of Kerascope: `LiveMonitor`, a Keras 3 callback that writes a run directory."""

from kerascope.callbacks.live_monitor import LiveMonitor

__all__ = ["LiveMonitor"]
