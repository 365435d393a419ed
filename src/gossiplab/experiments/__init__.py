"""Experiments: setup from config, single runs; sweeps, the results store."""
