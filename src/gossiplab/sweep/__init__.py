"""Many runs into one store: sweep files (spec.py), the SQLite results store (store.py), where runs
execute (executors.py), the claim/run/record loop (scheduler.py) and export (export.py)."""
