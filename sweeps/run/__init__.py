"""A sweep on Ray Tune: the driver (``run``), resuming a dead driver's sweep, the submitted job's entry, the trial
function, progress lines, data prepared once per sweep, merging identical trials, checkpoints read without
pickles, the sweep's identity and state file, the plan and the parent run's conclusion."""

from sweeps import lazy

_HOMES = {"run_sweep": "driver", "SweepResult": "driver", "resume_sweep": "driver_resume",
          "SweepState": "state", "read_state": "state", "make_plan": "plan", "run_trial": "trial",
          "TrialTask": "trial", "SweepIdentity": "identity", "SweepSource": "identity"}
__all__ = sorted(_HOMES)
__getattr__ = lazy.public_names(__name__, _HOMES)
