"""gossiplab: decentralized SGD with multiple gossip steps, simulated fast and measured honestly."""

import os as _os
import sys as _sys
import time as _time

__version__ = "0.1.0"
IMPORTED_AT = _time.time()  # wall clock when gossiplab was first imported (start-up records)

# Idle OpenMP threads sleep at once instead of spinning on cores the run's own workers (or other
# processes) need (engine/threads.py). Read when torch loads its OpenMP runtime, so only effective
# when gossiplab is imported first (the CLI always is); an explicit setting is kept.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
