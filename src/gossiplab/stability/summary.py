"""Turn the raw records of a stability run into estimates with intervals: model and loss
stability, the error decomposition, smoothness (c*beta), consensus against its recursion, and the
theory's numbers for the same configuration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gossiplab import theory
from gossiplab.config import Config
from gossiplab.setup import Setup
from gossiplab.stats import mean_ci

ESTIMAND = ("E[(1/mn) sum_{j,i} ||A(S) - A(S^(ij))||^2] with A(S) the averaged model at iteration T "
            "(l2 on-average model stability squared)")


def estimate(per_rep: list[list[float]], confidence: float) -> dict:
    """Mean over all perturbations; interval over repetition means when there are >= 2
    repetitions (each repetition's mean is an independent draw of S, the seeds and the twins),
    otherwise over the perturbations (conditional on S and the training seeds)."""
    pooled = [v for vals in per_rep for v in vals]
    pert = mean_ci(pooled, confidence)
    out = {"mean": pert["mean"], "median": float(np.median(pooled)) if pooled else None,
           "n": len(pooled), "ci_perturbations": pert["ci"]}
    if len(per_rep) >= 2:
        reps = mean_ci([float(np.mean(v)) for v in per_rep if v], confidence)
        out.update(ci=reps["ci"], ci_basis="repetitions")
    else:
        out.update(ci=pert["ci"], ci_basis="perturbations (conditional on S and the seeds)")
    return out


def final_twins(records: list[dict], T: int) -> dict | None:
    return next((r for r in records if r["iteration"] == T), None)


def _c(cfg: Config) -> float | None:
    return cfg.optim.lr if cfg.optim.schedule == "inverse_t" else None


def summarise(cfg: Config, repetitions: list[dict], setup: Setup) -> dict[str, Any]:
    T = cfg.train.iterations
    conf = cfg.stability.confidence
    names = list(repetitions[0]["algorithms"]) if repetitions else []
    stability: dict[str, Any] = {}
    decomposition: dict[str, Any] = {}
    smoothness: dict[str, Any] = {}
    consensus: dict[str, Any] = {}
    status = "ok"
    for name in names:
        avg, node, l_abs, l_signed, l_test = [], [], [], [], []
        per_pert = []
        train_l, test_l, gap, gap_m, opt, exc = [], [], [], [], [], []
        probes, cons = [], []
        for rep in repetitions:
            a = rep["algorithms"][name]
            run = a["run"]
            if run["status"] != "ok":
                status = "diverged"
                continue
            fin = final_twins(a["twins"], T)
            if fin is not None:
                avg.append(fin["avg_dist"])
                node.append(fin["node_dist"])
                base, twin = fin["loss_replaced"], fin["loss_replaced_twin"]
                l_abs.append([abs(t - b) for t, b in zip(twin, base, strict=True)])
                l_signed.append([t - b for t, b in zip(twin, base, strict=True)])
                l_test.append(fin["loss_test_abs"])
                gap_m.append(fin["gen_gap_matched"])
                for k, p in enumerate(rep["perturbations"]):
                    per_pert.append({"repetition": rep["repetition"], **p,
                                     "avg_dist": fin["avg_dist"][k], "node_dist": fin["node_dist"][k],
                                     "node_dists": fin["node_dists"][k] if "node_dists" in fin else None,
                                     "loss_replaced": base[k], "loss_replaced_twin": twin[k],
                                     "loss_test_abs": fin["loss_test_abs"][k]})
            f = run["final"]["avg_model"]
            train_l.append(f["train_loss"])
            test_l.append(f["test_loss"])
            gap.append(f["test_loss"] - f["train_loss"])
            ref = rep.get("reference")
            if ref is not None:
                opt.append(f["train_loss"] - ref["min_train_loss"])
                exc.append(f["test_loss"] - ref["min_test_loss"])
            probes += [{"repetition": rep["repetition"], **p} for p in a["smoothness"]]
            if a["consensus"]:
                last = a["consensus"][-1]
                cons.append({"repetition": rep["repetition"], **last})
        avg_est = estimate(avg, conf)
        stability[name] = {
            "estimand": ESTIMAND,
            "avg_model": avg_est,
            "avg_model_root": math.sqrt(avg_est["mean"]) if avg_est["mean"] is not None else None,
            "node_models": estimate(node, conf),
            "loss_stability": {
                "replaced_abs": estimate(l_abs, conf),
                "replaced_signed": estimate(l_signed, conf),
                "test_abs": estimate(l_test, conf),
            },
            "perturbations": per_pert,
        }
        decomposition[name] = {
            "train_loss": mean_ci(train_l, conf),
            "test_loss": mean_ci(test_l, conf),
            "gen_gap": {**mean_ci(gap, conf), "values": gap},
            "gen_gap_label_matched": {**mean_ci(gap_m, conf), "values": gap_m},
            "optimization_error": {**mean_ci(opt, conf), "values": opt} if opt else None,
            "excess_error": {**mean_ci(exc, conf), "values": exc} if exc else None,
        }
        betas = [p["beta"] for p in probes]
        smoothness[name] = {
            "probes": probes,
            "beta": max(betas) if betas else None,
            "lipschitz": max((p["max_grad_norm"] for p in probes), default=None),
        }
        if cons:
            consensus[name] = {
                "measured": mean_ci([c["measured"] for c in cons], conf),
                "recursion_bound": mean_ci([c["recursion_bound"] for c in cons], conf),
                "steady_state": mean_ci([c["steady_state"] for c in cons], conf),
                "bound_holds": all(c["measured"] <= c["recursion_bound"] * (1 + 1e-4) + 1e-12
                                   for c in cons),
                "bound_applies": all(c["bound_applies"] for c in cons),
            }
    refs = [rep.get("reference") for rep in repetitions if rep.get("reference")]
    return {
        "status": status,
        "kind": "stability",
        "algorithm": cfg.algorithm.name,
        "config_hash": cfg.config_hash(),
        "perturbations": cfg.stability.perturbations,
        "repetitions": len(repetitions),
        "confidence": conf,
        "final": repetitions[0]["algorithms"][cfg.algorithm.name]["run"]["final"] if repetitions else None,
        "runs": {n: repetitions[0]["algorithms"][n]["run"] for n in names} if repetitions else {},
        "stability": stability,
        "decomposition": decomposition,
        "reference": refs,
        "smoothness": smoothness,
        "consensus": consensus,
        "theory": theory_block(cfg, setup, smoothness),
        "topology": setup.topology.summary(),
        "heterogeneity": setup.describe()["partition"],
        "seeds": cfg.seeds.model_dump(),
    }


def theory_block(cfg: Config, setup: Setup, smoothness: dict) -> dict[str, Any]:
    """The theory's numbers for this configuration, with the measured c and beta."""
    c = _c(cfg)
    betas = [s["beta"] for s in smoothness.values() if s.get("beta") is not None]
    lips = [s["lipschitz"] for s in smoothness.values() if s.get("lipschitz") is not None]
    beta = max(betas) if betas else None
    L = max(lips) if lips else None
    T, m = cfg.train.iterations, cfg.topology.nodes
    n = float(np.mean(setup.partition.sizes))
    q = cfg.algorithm.gossip_steps
    out: dict[str, Any] = {
        "c": c, "beta": beta, "lipschitz": L, "T": T, "n": n, "m": m, "Q": q,
        "lambda": setup.topology.lam, "spectral_gap": theory.spectral_gap(setup.topology),
        "contraction_Q": theory.gossip_contraction(setup.topology, q),
        "c_beta": None, "exponents": None, "notes": [],
    }
    if c is None:
        out["notes"].append(f"optim.schedule = {cfg.optim.schedule!r}: the rates assume "
                            "inverse_t (c/(t+1)); no exponents")
    if beta is None:
        out["notes"].append("no smoothness probes (stability.hessian_points = 0): no c*beta")
    if c is not None and beta is not None and beta > 0:
        out["c_beta"] = c * beta
        out["exponents"] = theory.rate_exponents(c, beta)
        out["rates"] = {"centralized": theory.centralized_rate(T, n, m, c, beta),
                        "decentralized": theory.decentralized_limit_rate(T, n, m, c, beta)}
        if L is not None and n * m > 1:
            out["hardt_nonconvex_bound"] = theory.hardt_nonconvex_stability(T, n * m, c, beta, L)
            out["notes"].append("hardt_nonconvex_bound: Hardt et al. (2016) Thm 3.12 with nm "
                                "samples and the measured beta, L; it assumes a loss in [0, 1], "
                                "which cross-entropy is not")
    return out
