"""Imported first by the sweep's fork server (:data:`gossiplab.sweep.executors.WORKER_MODULES`):
the garbage collector stays off while the server imports torch and the run modules (imports
create several hundred thousand objects and no garbage; the collector's passes over them cost
about a sixth of the import time). :mod:`gossiplab.sweep.preload`, imported last, freezes the
imported objects and turns the collector back on; every worker turns it on too, whatever the
server's imports did.
"""

import gc

gc.disable()
