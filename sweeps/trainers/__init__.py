"""The trainer seam: any training function becomes a sweep's trials (``trainer(...)``, ``report``, the registry)."""

from sweeps import lazy

_HOMES = {"Factor": "api", "Metric": "api", "Trainer": "api", "trainer": "api", "report": "api",
          "get_checkpoint": "api", "load": "registry", "installed": "registry"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
