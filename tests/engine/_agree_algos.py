"""One rank of the algorithms' agreement run: for each case (algorithm + config overrides),
train on the distributed engine through the same train() loop as the CLI, and save this rank's
final rows, algorithm buffers, rounds, the bytes it measured (point-to-point and all-reduce
payloads) and its ledger; rank 0 also saves the evaluation records.

Usage: python _agree_algos.py OUT_DIR CASES.json   (CASES: {"case-id": [overrides...], ...})
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
    comm = None
    for case, overrides in cases.items():
        cfg = load_config(None, overrides)
        comm = comm or connect(cfg)
        comm.nodes = cfg.topology.nodes
        setup = prepare(cfg)
        lo, hi = comm.block()
        shard = LocalShard.from_setup(setup, lo, hi)
        name = cfg.algorithm.name
        engine = DistributedEngine(setup, name, comm=comm, shard=shard)
        ev = Evaluator(setup.dataset, setup.partition.union(), cfg.eval) if comm.rank == 0 else None
        evaluator = DistributedEvaluator(comm, ev, cfg.eval.max_nodes)
        result = train(setup, name, sim=engine, evaluator=evaluator)
        torch.save({"params": engine.stack.params.clone(), "block": [lo, hi],
                    "rounds": engine.round, "p2p_bytes": engine.mixer.bytes_sent,
                    "p2p_messages": engine.mixer.messages,
                    "all_reduce_payload": engine.net.all_reduce_payload,
                    "buffers": engine.algorithm.state_dict(),
                    "ledger": engine.ledger.state_dict()},
                   out / f"{case}.rank{comm.rank}.pt")
        if comm.rank == 0:
            (out / f"{case}.json").write_text(json.dumps(result.history))
    comm.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
