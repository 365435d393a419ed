"""One run on any engine: the training loop (loop.py), the simulator run and its output files
(runner.py), checkpoints and resume (checkpointing.py; per rank: rank_checkpoints.py), the
distributed run (distributed.py) and progress display (progress.py)."""
