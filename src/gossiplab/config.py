"""Typed experiment configuration: a tree of sections, each field with a default and a description.

Loaded from TOML, then ``--set section.field=value`` overrides, then validated. Every problem is
reported as one :class:`ConfigError` naming the key (with a did-you-mean for unknown keys).
The resolved config (seeds included) is written next to every result.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gossiplab.errors import ConfigError, closest, shown

PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]  # torch and NumPy seeds: 64-bit
MAX_GOSSIP_STEPS = 10**6  # Q: beyond this no run finishes; bounded before anything is built
MAX_ITERATIONS = 10**9  # T: likewise (a billion tiny steps already take days)
MAX_SECONDS = 1e6  # a modeled latency or step time: finite, under twelve days
MAX_THREADS = 1024


def _is_number_type(annotation: Any) -> bool:
    """int, float, or a list / optional / constrained form of them."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_number_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return any(_is_number_type(a) for a in typing.get_args(annotation) if a is not type(None))
    return annotation in (int, float)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: Any) -> Any:
        # pydantic's lax mode reads true/false as 1/0; for a count or a rate that is a mistake
        values = v if isinstance(v, list) else [v]
        if (any(isinstance(x, bool) for x in values) and info.field_name is not None
                and _is_number_type(cls.model_fields[info.field_name].annotation)):
            raise ValueError("expected a number, got a boolean (true/false)")
        return v


class DataConfig(Section):
    """What data, where it lives, and how it is split over the nodes."""

    dataset: str = Field("digits", description="digits | fashion_mnist | cifar10 | cifar100 | synthetic")
    root: str = Field("data", description="Folder searched for dataset files (archives, IDX files).")
    download: bool = Field(True, description="Try to download missing CIFAR archives.")
    verify: bool = Field(True, description="Check dataset files against their published checksums.")
    partition: str = Field(
        "dirichlet", description="iid | dirichlet | stratified_dirichlet (S keeps the training "
        "set's label mix; node sizes differ) | shards")
    alpha: float = Field(0.3, gt=0, allow_inf_nan=False,
                         description="Dirichlet concentration; smaller = more label skew.")
    shards_per_node: int = Field(2, ge=1, description="Shards (about classes) per node, for 'shards'.")
    samples_per_node: int | None = Field(
        None, ge=1, description="n: exact samples per node; unset = use all training data."
    )
    augment: bool | None = Field(
        None, description="Pad-4 crop + flip per batch; unset = the dataset's default (CIFAR on)."
    )
    sampling: Literal["uniform", "shuffle"] = Field(
        "uniform",
        description="Mini-batches: 'uniform' draws with replacement (as the theory assumes); "
        "'shuffle' walks a per-node permutation each epoch.",
    )
    synthetic_train: int = Field(2000, ge=1, description="Synthetic data: training samples.")
    synthetic_test: int = Field(1000, ge=1, description="Synthetic data: test samples.")
    synthetic_classes: int = Field(10, ge=2, description="Synthetic data: classes.")
    synthetic_shape: list[int] = Field([1, 8, 8], description="Synthetic data: [C, H, W].")

    @field_validator("synthetic_shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        if len(v) not in (1, 3) or min(v) < 1:
            raise ValueError("must be [C, H, W] (or [D]) with positive entries")
        return v
    synthetic_noise: float = Field(1.0, ge=0, le=1e6, allow_inf_nan=False,
                                   description="Synthetic data: within-class noise.")


class TopologyConfig(Section):
    """The communication graph and its mixing matrix W."""

    name: str = Field(
        "ring",
        description="ring | torus | grid | exponential | hypercube | complete | star | "
        "erdos_renyi | exp_onepeer (time-varying) | file",
    )
    nodes: int = Field(16, ge=1, description="m: number of nodes.")
    mixing: str = Field("metropolis", description="metropolis | max_degree")
    laziness: float = Field(0.0, ge=0, lt=1, description="W <- (1-a) W + a I.")
    shape: list[PositiveInt] | None = Field(None, min_length=2, max_length=2,
                                            description="[rows, cols] for torus/grid.")
    er_p: float = Field(0.3, gt=0, le=1, description="Edge probability for erdos_renyi.")
    seed: Seed = Field(0, description="Seed for random graphs (erdos_renyi).")
    edge_file: str | None = Field(None, description="Edge list ('u v' per line) for 'file'.")
    matrix_file: str | None = Field(None, description="Mixing matrix (.npy or text) for 'file'.")


class ModelConfig(Section):
    """The model every node trains."""

    name: str = Field("mlp", description="logreg | mlp | cnn | resnet18")
    hidden: list[PositiveInt] = Field([64], description="MLP hidden layer widths.")
    width: int = Field(32, ge=1, description="CNN base channels (ResNet-18: use 64).")
    gn_groups: int = Field(2, ge=1, description="GroupNorm groups in ResNet-18.")


class OptimConfig(Section):
    """Local SGD step of every node."""

    lr: float = Field(0.1, gt=0, le=1e6, description="Learning rate; for 'inverse_t' this is c in c/(t+1).")
    schedule: Literal["constant", "inverse_t", "cosine", "step"] = Field(
        "constant", description="constant | inverse_t (c/(t+1+t0)) | cosine | step"
    )
    t0: int = Field(0, ge=0, description="Offset for inverse_t: lr_t = c / (t + 1 + t0).")
    step_every: int = Field(1000, ge=1, description="Step schedule: decay every this many iterations.")
    gamma: float = Field(0.1, gt=0, le=1, description="Step schedule: decay factor.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Heavy-ball momentum (per node).")
    nesterov: bool = Field(False, description="Nesterov momentum.")
    weight_decay: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False,
                                description="L2 penalty added to the gradient.")
    batch_size: int = Field(16, ge=1, description="b: mini-batch size per node per iteration.")


BASELINE = "centralized"
"""The algorithm every decentralized run is compared with (``algorithm.compare_centralized``)."""


class AlgorithmConfig(Section):
    """What the nodes do each iteration."""

    name: str = Field(
        "dsgd_mgs",
        description="dsgd_mgs | centralized | gradient_tracking | gossip_pga | local_steps | "
        "q_schedule | consensus_q | choco",
    )
    gossip_steps: int = Field(1, ge=0, le=MAX_GOSSIP_STEPS,
                              description="Q: gossip rounds per iteration (0 = local SGD).")
    gossip: str = Field(
        "plain",
        description="Gossip scheme for the Q rounds: plain (Q multiplications by W) | chebyshev "
        "(Chebyshev-accelerated) | exact (finite-time averaging in K-1 rounds, K = distinct "
        "eigenvalues of W); chebyshev and exact need a static topology.",
    )
    compare_centralized: bool = Field(
        True, description="Also train centralized mini-batch SGD on the same data and batches."
    )
    period: int = Field(
        10, ge=1,
        description="H: for gossip_pga, an exact average (all-reduce) every H iterations instead "
        "of that iteration's gossip; for local_steps, gossip only every H iterations (H local "
        "SGD steps between communications).",
    )
    q_schedule: Literal["constant", "step", "decreasing", "early"] = Field(
        "constant",
        description="For q_schedule: Q_t by iteration. constant: Q; step: Q before "
        "q_switch * T, q_late after; decreasing: from q_early down to Q, linearly over T; "
        "early: q_early before q_switch * T, Q after.",
    )
    q_early: int = Field(4, ge=0, le=MAX_GOSSIP_STEPS,
                         description="Q_t at the start for the 'decreasing' and 'early' "
                         "schedules.")
    q_late: int = Field(4, ge=0, le=MAX_GOSSIP_STEPS,
                        description="Q_t after the switch for the 'step' schedule.")
    q_switch: float = Field(0.5, ge=0, le=1, description="Fraction of T at which 'step' and "
                            "'early' switch Q.")
    consensus_target: float = Field(
        1e-3, gt=0, allow_inf_nan=False,
        description="For consensus_q: gossip rounds continue until the consensus distance "
        "(1/m) sum_k ||x_k - xbar||^2 is at most this (Kong et al. 2021).",
    )
    consensus_cap: int = Field(16, ge=0, le=MAX_GOSSIP_STEPS,
                               description="For consensus_q: at most this many gossip "
                               "rounds per iteration.")
    compressor: str = Field(
        "top_k", description="For choco: identity | top_k | random_k | quantize8 (8-bit)."
    )
    compress_ratio: float = Field(
        0.1, gt=0, le=1, description="For choco with top_k / random_k: fraction of entries kept."
    )
    consensus_step: float = Field(
        0.5, gt=0, le=1,
        description="For choco: gamma, the consensus step size x <- x + gamma (W xhat - xhat).",
    )
    compress_seed: Seed = Field(0, description="For choco with random_k: seed of the random "
                                "coordinates (the same on every node).")


class TrainConfig(Section):
    """Length of training."""

    iterations: int = Field(1500, ge=1, le=MAX_ITERATIONS,
                            description="T: iterations (each = local step + Q gossip).")


class EvalConfig(Section):
    """When and how models are evaluated."""

    every: int = Field(150, ge=1, description="Evaluate every this many iterations (and at the end).")
    at_start: bool = Field(
        True, description="Also evaluate the initial model (iteration 0); off: training starts "
        "at once and the first record is at eval.every.")
    batch_size: int = Field(
        0, ge=0, description="Evaluation batch size; 0 = sized from the model so that evaluation "
        "takes no more activation memory than one node's forward/backward at the training batch "
        "(at least 8 MiB).")
    node_samples: int = Field(
        1000, ge=1, description="Per-node models are scored on this fixed subsample of train/test."
    )
    max_nodes: int = Field(16, ge=1, description="Score at most this many nodes (evenly spaced).")


class SeedsConfig(Section):
    """Independent seeds: changing one leaves the others' randomness untouched."""

    data: Seed = Field(0, description="Partition of the data over nodes.")
    init: Seed = Field(0, description="Model initialisation (shared by all nodes).")
    sampling: Seed = Field(0, description="Mini-batch indices and augmentation.")


class EngineConfig(Section):
    """Where and how the computation runs."""

    name: Literal["simulator", "distributed"] = Field(
        "simulator",
        description="simulator (one process, all nodes) | distributed (torch.distributed, one "
        "process per node or per block of nodes; start with torchrun or `gossiplab launch`)",
    )
    backend: Literal["auto", "loop", "threads", "bmm", "vmap"] = Field(
        "auto",
        description="Per-node forward/backward: loop; threads (the loop split over one "
        "single-threaded worker per thread); bmm (batched, Flatten/Linear/ReLU models); vmap "
        "(torch.func, for GPUs). auto: bmm where it applies, else vmap on GPU, threads on CPU.",
    )
    device: str = Field("cpu", description="cpu | cuda | cuda:N | auto")
    threads: int = Field(0, ge=0, le=MAX_THREADS, description="torch intra-op threads; 0 = torch's default.")
    fuse_gossip: bool = Field(
        True,
        description="Run the Q plain gossip rounds of an iteration as one product by W^Q when "
        "that is cheaper (equal up to float rounding).",
    )
    tune_malloc: bool = Field(
        True,
        description="Raise glibc's mmap/trim thresholds so large buffers are reused, not "
        "re-faulted every step (Linux; changes no result).",
    )
    dist_backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Distributed engine: torch.distributed backend; auto = nccl on CUDA, gloo on CPU."
    )
    timeout: float = Field(
        30.0, gt=0, le=7 * 86400,
        description="Distributed engine: seconds to wait for a peer (gossip round, collective, "
        "heartbeat) before stopping with an error naming the lost rank; the rendezvous waits at "
        "least 60 s for every process to join.",
    )


class NetworkConfig(Section):
    """The network cost model: modeled time = iterations x compute_seconds + per gossip round
    (latency + busiest node's bytes / bandwidth) + per all-reduce (2 ceil(log2 m) latencies +
    2 (m-1)/m payload / bandwidth), for a data-center and a wide-area network."""

    compute_seconds: float = Field(
        0.002, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
        description="Compute time of one iteration (one node's gradient and update; nodes work "
        "in parallel). Set it from a benchmark of the model on the target hardware.",
    )
    compute: Literal["configured", "measured"] = Field(
        "configured",
        description="configured: compute_seconds per iteration; measured: this run's own timed "
        "gradient + update per iteration, divided by the node batches the process computes (a "
        "timing, so the modeled time is then not reproducible).",
    )
    datacenter_latency: float = Field(5e-5, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
                                      description="Data-center network: seconds "
                                      "per message (one-way latency).")
    datacenter_bandwidth: float = Field(1.25e9, gt=0, allow_inf_nan=False,
                                        description="Data-center network: bytes "
                                        "per second per link (10 Gbit/s).")
    wan_latency: float = Field(0.05, ge=0, le=MAX_SECONDS, allow_inf_nan=False,
                               description="Wide-area network: seconds per message.")
    wan_bandwidth: float = Field(1.25e7, gt=0, allow_inf_nan=False,
                                 description="Wide-area network: bytes per second "
                                 "per link (100 Mbit/s).")


class StabilityConfig(Section):
    """Stability measurement (`gossiplab stability`): twins on S^(ij), smoothness, reference run."""

    perturbations: int = Field(
        8, ge=1, le=10**5, description="K: perturbations (node j, sample i) per repetition; one twin each."
    )
    repetitions: int = Field(
        1, ge=1, le=10**4, description="Independent repetitions; repetition r adds r to seeds.data, "
        "seeds.init and seeds.sampling (intervals over seeds need >= 2).",
    )
    seed: Seed = Field(0, description="Seed for drawing perturbations (j, i) and fresh samples.")
    record_points: int = Field(
        24, ge=2, le=10**5, description="Log-spaced iterations at which twin distances are recorded."
    )
    hessian_points: int = Field(
        4, ge=0, le=10**4, description="Evenly spaced iterations where beta (top Hessian eigenvalue) is "
        "estimated; 0 = off.",
    )
    power_iterations: int = Field(30, ge=1, le=10**5, description="Power iterations per beta estimate.")
    reference_iterations: int | None = Field(
        None, ge=0, le=MAX_ITERATIONS, description="Centralized reference run for optimization/excess error; "
        "unset = 4 x train.iterations, 0 = off.",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of confidence intervals.")


class Config(Section):
    """A complete experiment."""

    data: DataConfig = Field(default_factory=DataConfig)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Stable id of the resolved config (same config -> same id; any change -> new id).

        Keys added after results were stored (:data:`HASHED_ONLY_IF_SET`) count only when set
        away from their default, so the runs already in a store keep their ids."""
        raw = self.to_dict()
        for (sec, key), (new, old) in HASHED_AS_BEFORE.items():
            if raw[sec][key] == new:
                raw[sec][key] = old
        for sec, key in HASHED_ONLY_IF_SET:
            section = type(self).model_fields[sec].annotation
            if raw[sec][key] == section.model_fields[key].get_default(call_default_factory=True):
                del raw[sec][key]
        for sec in [s for s, v in raw.items() if v == {}]:
            del raw[sec]
        blob = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


HASHED_ONLY_IF_SET: tuple[tuple[str, str], ...] = (
    *(("algorithm", k) for k in ("period", "q_schedule", "q_early", "q_late", "q_switch",
                                   "consensus_target", "consensus_cap", "compressor",
                                   "compress_ratio", "consensus_step", "compress_seed")),
    *(("network", k) for k in NetworkConfig.model_fields),
    ("eval", "at_start"),
)
"""(section, key) pairs left out of :meth:`Config.config_hash` while at their default: keys added
after stores of results existed (adding a key must not change every stored run's id)."""

HASHED_AS_BEFORE: dict[tuple[str, str], tuple[Any, Any]] = {
    ("eval", "batch_size"): (0, 2048),
}
"""Defaults that changed after stores of results existed, hashed as the old default so stored
runs keep their ids: {(section, key): (new default, old default)}. The evaluation batch (2,048,
now sized from the model) changes evaluated metrics only by float rounding."""


# ----------------------------------------------------------------------------------------------


def _section_fields(model: type[BaseModel]) -> dict[str, Any]:
    return dict(model.model_fields)




def _did_you_mean(key: str, model: type[BaseModel], prefix: str) -> str:
    # name -> full key: this level's fields, and at the top also every section's fields by their
    # own name, so a bare 'nodes' suggests 'topology.nodes' and 'topolgy' suggests 'topology'
    names: dict[str, str] = {}
    if not prefix:
        for sec, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                for k in ann.model_fields:
                    names.setdefault(k, f"{sec}.{k}")
                    names[f"{sec}.{k}"] = f"{sec}.{k}"
    names.update({k: f"{prefix}{k}" for k in model.model_fields})
    close = closest(key, names)
    return f" (did you mean '{names[close]}'?)" if close else ""


def check_keys(raw: dict[str, Any], model: type[BaseModel] = Config, prefix: str = "") -> None:
    """Reject unknown keys with a did-you-mean, before type validation."""
    fields = _section_fields(model)
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in fields:
            hint = _did_you_mean(key, model, prefix)
            if not hint:  # nothing close: say what there is
                where = f"keys of [{prefix[:-1]}]" if prefix else "sections"
                hint = f"; {where}: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{shown(full)}'{hint}")
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{shown(full)}' must be a section (a TOML table)")
            check_keys(value, ann, prefix=f"{full}.")


def _format_validation(e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {shown(repr(got), 80)})"
        msg = err["msg"].removeprefix("Value error, ")
        msgs.append(shown(f"config {loc}: {msg}{got_s}"))
    return "; ".join(msgs)


def from_dict(raw: dict[str, Any], *, strict: bool = False, where: str = "") -> Config:
    """Validate ``raw``. ``strict``: values read from files must have their key's type (a TOML
    string "4" is not a number); the command line may give numbers as text."""
    check_keys(raw)
    try:
        return Config.model_validate(raw, strict=strict)
    except ValidationError as e:
        raise ConfigError(f"{where}{_format_validation(e)}") from None
    except RecursionError:
        raise ConfigError(f"{where}config nested too deeply") from None


def parse_value(text: str) -> Any:
    """A --set value: TOML syntax (numbers, booleans, [lists], "strings"), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (ValueError, RecursionError):  # (ValueError: also an integer of over 4,300 digits)
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got '{shown(assignment)}'")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set: malformed key '{shown(key)}'")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set: '{shown(p)}' in '{shown(key)}' is not a section")
        node = nxt
    node[parts[-1]] = parse_value(value.strip())


CONFIG_FILE_LIMIT = 1 << 20  # a config is a page of TOML; anything larger is a mistake


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file: a regular file of at most 1 MiB, UTF-8, valid TOML, not absurdly nested."""
    from gossiplab.errors import UserError
    from gossiplab.fileio import read_text

    path = Path(path)
    try:
        text = read_text(path, what, CONFIG_FILE_LIMIT, expected="TOML text")
    except UserError as e:
        raise ConfigError(str(e)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message names line and column, never the content
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError:  # Python's limit on converting long digit strings to int
        raise ConfigError(f"{path}: invalid TOML: an integer of more than "
                          f"{sys.get_int_max_str_digits()} digits") from None


def _without(raw: dict[str, Any], keys: list[list[str]]) -> dict[str, Any]:
    out = merge(raw, {})
    for parts in keys:
        node = out
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    raw: dict[str, Any] = read_toml(path) if path else {}
    if path:  # the file's own values, strictly typed (those --set replaces aside)
        replaced = [a.split("=", 1)[0].strip().split(".") for a in overrides or [] if "=" in a]
        from_dict(_without(raw, replaced), strict=True, where=f"{path}: ")
    for a in overrides or []:
        apply_override(raw, a)
    return from_dict(raw)


def get_dotted(d: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of a nested dict, or None."""
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` of a nested dict, creating sections on the way."""
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``."""
    out = json.loads(json.dumps(base))
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def reference_markdown() -> str:
    """Config reference (every key, type, default, meaning) generated from the models."""
    lines = []
    for sec, f in Config.model_fields.items():
        model = f.annotation
        lines.append(f"### `[{sec}]`\n\n{(model.__doc__ or '').strip()}\n")
        lines.append("| key | default | meaning |\n|---|---|---|")
        for name, fld in model.model_fields.items():
            default = fld.get_default(call_default_factory=True)
            meaning = (fld.description or "").replace("|", "\\|")  # a bare | splits the cell
            lines.append(f"| `{sec}.{name}` | `{json.dumps(default)}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def to_toml(cfg: Config) -> str:
    """Render a config as TOML (for `gossiplab config show`)."""
    out = []
    for sec, values in cfg.to_dict().items():
        out.append(f"[{sec}]")
        for k, v in values.items():
            if v is None:
                out.append(f"# {k} = (unset)")
            else:
                out.append(f"{k} = {json.dumps(v)}")
        out.append("")
    return "\n".join(out)
