"""Imported last by the sweep's fork server (:data:`gossiplab.sweep.executors.WORKER_MODULES`),
after torch and the modules a worker runs (imported with the collector off:
:mod:`gossiplab.sweep.preload_begin`).

``gc.freeze()`` moves every object imported so far out of the garbage collector's reach: workers
forked from the server then share those pages (a collection in a worker would otherwise write to
every object it traverses, copying the pages), and the server's own exit skips the final
collection over torch's objects (0.3-0.4 s). The objects are module-level and live as long as
the process anyway.
"""

import gc

gc.freeze()
gc.enable()
