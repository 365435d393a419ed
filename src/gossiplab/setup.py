"""Turn a config into the shared ingredients of a run: data, partition, topology, device.

Built once and shared by every algorithm trained on it (DSGD-MGS and its centralized baseline see
the same partition), and by both engines (simulator and distributed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from gossiplab.algorithms import ALGORITHMS, build_algorithm
from gossiplab.compression import COMPRESSORS
from gossiplab.config import Config
from gossiplab.data.datasets import DATASETS, Dataset, load_dataset
from gossiplab.data.partition import PARTITIONERS, Partition, partition
from gossiplab.errors import ConfigError, unknown
from gossiplab.gossip import SCHEMES, build_gossip
from gossiplab.models import MODELS, build_model
from gossiplab.topology import ALL_TOPOLOGIES, MIXING_RULES, Topology, build_topology


@dataclass
class Setup:
    cfg: Config
    dataset: Dataset
    partition: Partition
    topology: Topology
    device: torch.device
    augment: bool

    def describe(self) -> dict:
        ds = self.dataset
        het = self.partition.heterogeneity(ds.y_train.cpu().numpy())
        return {
            "dataset": {
                "name": ds.name, "train": len(ds.y_train), "test": len(ds.y_test),
                "input_shape": list(ds.input_shape), "classes": ds.num_classes,
                "augment": self.augment,
            },
            "partition": {k: v for k, v in het.items() if k != "label_histograms"},
            "label_histograms": het["label_histograms"],
            "topology": self.topology.summary(),
            **({"gossip": self.gossip_description()} if self.gossips() else {}),
            "device": str(self.device),
        }

    def gossips(self) -> bool:
        """Whether the configured algorithm talks over the graph (has a gossip scheme)."""
        return ALGORITHMS[self.cfg.algorithm.name].uses_gossip

    def gossip_description(self) -> dict:
        """The configured gossip scheme: rounds per iteration actually used, worst-case factor."""
        a = self.cfg.algorithm
        return build_gossip(a.gossip, self.topology, a.gossip_steps).describe()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"engine.device: unknown device '{name}' (cpu, cuda, cuda:N, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("engine.device = 'cuda' but no CUDA device is available here")
    return dev


def _choice(key: str, kind: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ConfigError(unknown(kind, value, choices, key))


def check_names(cfg: Config) -> None:
    """Every component named in the config exists (checked before any data is loaded)."""
    _choice("data.dataset", "dataset", cfg.data.dataset, DATASETS)
    _choice("data.partition", "partition", cfg.data.partition, PARTITIONERS)
    _choice("topology.name", "topology", cfg.topology.name, ALL_TOPOLOGIES)
    _choice("topology.mixing", "mixing rule", cfg.topology.mixing, MIXING_RULES)
    _choice("model.name", "model", cfg.model.name, MODELS)
    _choice("algorithm.name", "algorithm", cfg.algorithm.name, ALGORITHMS)
    if ALGORITHMS[cfg.algorithm.name].compresses:
        _choice("algorithm.compressor", "compressor", cfg.algorithm.compressor, COMPRESSORS)
    _choice("algorithm.gossip", "gossip scheme", cfg.algorithm.gossip, SCHEMES)
    t = cfg.topology
    if t.name == "file" and t.edge_file is None and t.matrix_file is None:
        raise ConfigError("topology.name = 'file' needs topology.edge_file and/or topology.matrix_file")


MEMORY_SHARE = 1.0  # refuse what needs more than this share of the machine's physical memory


def _too_big(what: str, need: float, fix: str) -> None:
    from gossiplab.fileio import _size, memory_bytes

    have = memory_bytes() * MEMORY_SHARE
    if need > have:
        raise ConfigError(f"{what} needs about {_size(int(min(need, 2**62)))} of memory, more than "
                          f"this machine's {_size(int(have))}; {fix}")


def check_data_size(cfg: Config) -> None:
    """Before any data is generated: the synthetic dataset fits in memory (float32 samples)."""
    d = cfg.data
    if d.dataset == "synthetic":
        per_sample = 4.0 * float(__import__("math").prod(d.synthetic_shape)) + 8
        _too_big(f"data.synthetic_train + data.synthetic_test = {d.synthetic_train + d.synthetic_test:,} "
                 f"samples of shape {d.synthetic_shape}",
                 per_sample * (d.synthetic_train + d.synthetic_test),
                 "lower data.synthetic_train / synthetic_test / synthetic_shape")
    m = cfg.topology.nodes
    _too_big(f"topology.nodes = {m:,} (an {m:,} x {m:,} mixing matrix)", 8.0 * m * m * 3,
             "use fewer nodes")


def check_model_size(cfg: Config, ds: Dataset, replicas: int = 1) -> int:
    """Before any model is allocated: build it on the meta device (no memory) and check that m
    copies (m x ``replicas``: stability trains K + 1 twins side by side), with gradients and
    optimizer state, fit in memory. Returns its parameter count."""
    mc = cfg.model
    with torch.device("meta"):
        model = build_model(mc.name, ds.input_shape, ds.num_classes, hidden=tuple(mc.hidden),
                            width=mc.width, gn_groups=mc.gn_groups)
    params = sum(p.numel() for p in model.parameters())
    m = cfg.topology.nodes
    on = f"{m} nodes" if replicas == 1 else f"{m} nodes x {replicas:,} twins"
    _too_big(f"model '{mc.name}' with {params:,} parameters on {on}", 4.0 * params * m * 4 * replicas,
             "choose a smaller model (model.hidden, model.width) or fewer nodes"
             + ("" if replicas == 1 else " or fewer stability.perturbations"))
    return params


def load_data(cfg: Config) -> Dataset:
    d = cfg.data
    if d.dataset == "synthetic":
        return load_dataset(
            "synthetic", num_train=d.synthetic_train, num_test=d.synthetic_test,
            num_classes=d.synthetic_classes, shape=tuple(d.synthetic_shape),
            noise=d.synthetic_noise, seed=cfg.seeds.data,
        )
    return load_dataset(d.dataset, root=d.root, download=d.download, verify=d.verify)


def prepare(cfg: Config, dataset: Dataset | None = None) -> Setup:
    """Load (or reuse) the dataset, partition it, build the topology, check cross-field limits."""
    check_names(cfg)
    check_data_size(cfg)
    if cfg.engine.threads:
        torch.set_num_threads(cfg.engine.threads)
    device = resolve_device(cfg.engine.device)
    ds = dataset if dataset is not None else load_data(cfg)
    check_model_size(cfg, ds)
    m = cfg.topology.nodes
    part = partition(
        ds.y_train.cpu().numpy(), m, cfg.data.partition, seed=cfg.seeds.data,
        samples_per_node=cfg.data.samples_per_node, alpha=cfg.data.alpha,
        shards_per_node=cfg.data.shards_per_node, num_classes=ds.num_classes,
    )
    smallest = int(part.sizes.min())
    if cfg.optim.batch_size > smallest:
        raise ConfigError(
            f"optim.batch_size = {cfg.optim.batch_size} is larger than the smallest node's data "
            f"({smallest} samples); lower the batch size, use fewer nodes or raise "
            "data.samples_per_node"
        )
    t = cfg.topology
    topo = build_topology(
        t.name, m, mixing=t.mixing, laziness=t.laziness, seed=t.seed, er_p=t.er_p,
        shape=tuple(t.shape) if t.shape else None, edge_file=t.edge_file,
        matrix_file=t.matrix_file,
    )
    if topo.nodes != m:
        raise ConfigError(f"topology has {topo.nodes} nodes but topology.nodes = {m}")
    # fail early on a gossip scheme the topology can't run, and on options the algorithm refuses
    build_algorithm(cfg.algorithm.name, m, topo, cfg.algorithm, cfg.train.iterations)
    if cfg.algorithm.name != "centralized":
        warn_excess_rounds(cfg, topo)
    augment = ds.augment if cfg.data.augment is None else cfg.data.augment
    if augment and len(ds.input_shape) != 3:
        raise ConfigError("data.augment needs image data [C, H, W]")
    build_model_for(cfg, ds)  # fail early on a bad model config, before any training
    return Setup(cfg=cfg, dataset=ds.to(device), partition=part, topology=topo, device=device,
                 augment=augment)


class GossipWarning(UserWarning):
    """A setting that runs but is probably not what the user meant (the CLI prints one line)."""


def rounds_to_average(lam: float, dtype: torch.dtype = torch.float32) -> int | None:
    """Plain rounds after which lambda^Q is below the precision ``eps / 2`` of ``dtype``: beyond
    them W^Q equals the exact average as far as the working precision can tell."""
    if not 0.0 < lam < 1.0:
        return None if lam >= 1.0 else 1
    return math.ceil(math.log(float(torch.finfo(dtype).eps) / 2) / math.log(lam))


def warn_excess_rounds(cfg: Config, topo: Topology, factor: int = 4) -> None:
    """Warn when Q plain rounds are far more than the graph needs to average to float32
    precision (the extra rounds change nothing but the time spent)."""
    a = cfg.algorithm
    if a.gossip != "plain" or a.gossip_steps <= 1:
        return
    need = rounds_to_average(topo.lam)
    if need is not None and a.gossip_steps > factor * need:
        warnings.warn(
            f"algorithm.gossip_steps = {a.gossip_steps} is far beyond the {need} plain rounds after "
            f"which W^Q equals the exact average to float32 precision on this topology (lambda = "
            f"{topo.lam:.4g}); more rounds change nothing. Use Q = {need} or algorithm.gossip = "
            "'exact'", GossipWarning, stacklevel=2)


def build_model_for(cfg: Config, ds: Dataset) -> torch.nn.Module:
    """The model template, initialised from the init seed only (global RNG left untouched)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seeds.init)
        return build_model(m.name, ds.input_shape, ds.num_classes, hidden=tuple(m.hidden),
                           width=m.width, gn_groups=m.gn_groups)
