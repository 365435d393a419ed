"""gossiplab: decentralized SGD with multiple gossip steps, simulated fast and measured honestly."""

import time as _time

__version__ = "0.1.0"
IMPORTED_AT = _time.time()  # wall clock when gossiplab was first imported (start-up records)
