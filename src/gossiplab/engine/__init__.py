"""Training engines: the node stack (all models as one matrix), the simulator, the mixers."""
