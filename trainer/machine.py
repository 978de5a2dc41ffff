"""What machine a figure was measured on: every benchmark records the CPU model and its vector extensions,
because the same epoch takes 5 to 10 times longer on one 2-core machine than on another."""

from __future__ import annotations

import os
import subprocess


def cpu_description() -> dict:
    """``lscpu``'s model name, the CPU count and the vector-extension flags (avx*, amx*, fma) of this machine."""
    fields = {}
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:  # no lscpu (a minimal container): the model stays unknown
        listing = ""
    for line in listing.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = fields.get("Flags", "").split()
    return {"model_name": fields.get("Model name", "unknown"), "cpus": os.cpu_count(),
            "vector_flags": sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma")))}
