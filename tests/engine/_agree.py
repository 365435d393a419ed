"""One rank of a multi-case agreement run: for each case (config overrides), train DSGD-MGS and
the centralized baseline on the distributed engine, through the same train() loop as the CLI,
and save this rank's final rows and (rank 0) the evaluation records.

Usage: python _agree.py OUT_DIR CASES.json   (CASES: {"case-id": [overrides...], ...})
"""

import json
import sys
from pathlib import Path

import torch

from gossiplab.config import load_config
from gossiplab.engine.comm import connect
from gossiplab.engine.distributed import DistributedEngine, DistributedEvaluator, LocalShard
from gossiplab.metrics import Evaluator
from gossiplab.run.loop import train
from gossiplab.setup import prepare


def main(out: Path, cases: dict[str, list[str]]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import _schemes

    _schemes.register()
    comm = None
    for case, overrides in cases.items():
        cfg = load_config(None, overrides)
        comm = comm or connect(cfg)
        comm.nodes = cfg.topology.nodes
        setup = prepare(cfg)
        lo, hi = comm.block()
        shard = LocalShard.from_setup(setup, lo, hi)
        for name in ("dsgd_mgs", "centralized"):
            engine = DistributedEngine(setup, name, comm=comm, shard=shard)
            ev = Evaluator(setup.dataset, setup.partition.union(), cfg.eval) if comm.rank == 0 else None
            evaluator = DistributedEvaluator(comm, ev, cfg.eval.max_nodes)
            result = train(setup, name, sim=engine, evaluator=evaluator)
            torch.save({"params": engine.stack.params.clone(), "block": [lo, hi],
                        "rounds": engine.round, "bytes": engine.mixer.bytes_sent},
                       out / f"{case}.{name}.rank{comm.rank}.pt")
            if comm.rank == 0:
                (out / f"{case}.{name}.json").write_text(json.dumps(result.history))
    comm.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
