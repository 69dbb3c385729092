"""Typed, validated configuration for condensation and evaluation.

The loop names map to the paper's symbols (PAPER.md §1):

=====================  ======  ==========================================================
field                  symbol  meaning
=====================  ======  ==========================================================
``iterations``         —       outer iterations; each draws a fresh random network θ₀
``matching_steps``     K       gradient-matching steps (pixel updates) per iteration
``network_epochs``     T       epochs of training θ on S between two matching steps
``real_batch``         —       real images per class per matching step (256)
=====================  ======  ==========================================================

Defaults follow the authors' code; :data:`LOOP_SIZES` is the DCC loop-size table. An ipc that
is not in the table needs explicit ``matching_steps`` and ``network_epochs``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from condense.errors import ConfigError

Method = Literal["dc", "dsa", "dcc", "dsac"]
METHODS: tuple[str, ...] = ("dc", "dsa", "dcc", "dsac")
#: how the hot passes run (condense.compiled): compiled where possible, always, never
COMPILE_MODES: tuple[str, ...] = ("auto", "on", "off")

#: ipc -> (K matching steps, T network epochs), from the DCC code.
LOOP_SIZES: dict[int, tuple[int, int]] = {1: (10, 5), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def _check_networks(names: tuple[str, ...], field_name: str) -> None:
    from condense.networks import list_networks

    unknown = [n for n in names if n not in list_networks()]
    if unknown:
        raise ConfigError(f"unknown {field_name} {', '.join(map(repr, unknown))}; known: {', '.join(list_networks())}")


@dataclass(frozen=True)
class EvaluationConfig:
    """The evaluation protocol of PAPER.md §5.

    A fresh network per evaluation; SGD(lr, momentum 0.9, weight decay 5e-4), batch 256,
    ``epochs + 1`` epochs, lr × 0.1 after epoch ``epochs // 2 + 1`` (the optimiser, momentum
    included, is rebuilt then, as in the authors' code). ``epochs=None`` means 300 without
    augmentation and 1000 with DSA augmentation. ``ensemble`` says how the networks of one
    architecture are trained: ``"stacked"`` together as one vmapped model (same results up to
    float rounding; :mod:`condense.ensemble`), ``"one-by-one"``, or ``"auto"`` = stacked on CUDA,
    one by one on a CPU (where stacking is slower; ``bench/bench_evaluation.py``).

    ``compile`` compiles the training and test passes (:mod:`condense.compiled`: ``auto`` where a
    compiler works, ``on``, ``off``); ``test_dtype="bfloat16"`` runs the test pass under bf16
    autocast (opt-in; its effect on accuracy is in docs/benchmarks.md).
    """

    networks: tuple[str, ...] = ("convnet",)
    num_networks: int = 20
    epochs: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augmentation: Literal["auto", "none", "dsa", "dc"] = "auto"
    test_batch_size: int = 2048
    ensemble: Literal["auto", "stacked", "one-by-one"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    test_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile!r}; choose auto, on or off")
        if self.test_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"test_dtype must be float32 or bfloat16, got {self.test_dtype!r}")
        if self.ensemble not in ("auto", "stacked", "one-by-one"):
            raise ConfigError(f"unknown ensemble mode {self.ensemble!r}; choose auto, stacked or one-by-one")
        if self.num_networks < 1:
            raise ConfigError(f"evaluation needs at least one network, got num_networks={self.num_networks}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"evaluation epochs must be >= 1, got {self.epochs}")
        if not self.networks:
            raise ConfigError("evaluation needs at least one architecture")
        _check_networks(self.networks, "evaluation.networks")

    def resolved_epochs(self, augmentation: str) -> int:
        if self.epochs is not None:
            return self.epochs
        return 1000 if augmentation == "dsa" else 300


@dataclass(frozen=True)
class CondenseConfig:
    """One condensation run. See the module docstring for the loop names.

    Speed settings, which change rounding but not the mathematics: ``compile`` (the first-order
    passes through ``torch.compile``, :mod:`condense.compiled`), ``class_batching`` (the real
    passes of all classes as one vmapped pass where that is exact; ``auto`` = on CUDA, where the
    per-class passes are launch-bound) and, opt-in because they do change the numbers,
    ``real_grad_dtype="bfloat16"`` (the real-gradient passes under bf16 autocast) and
    ``network_train_dtype="bfloat16"`` (the T epochs of training θ on S between matching steps
    under bf16 autocast; they dominate an iteration from ipc 10 on).
    """

    dataset: str = "fashion-mnist"
    method: Method = "dcc"
    ipc: int = 1
    network: str = "convnet"
    iterations: int = 1000
    matching_steps: int | None = None
    network_epochs: int | None = None
    real_batch: int = 256
    syn_lr: float = 0.1
    syn_momentum: float = 0.5
    network_lr: float = 0.01
    network_batch: int = 256
    distance: Literal["ours", "mse", "cos"] = "ours"
    init: Literal["real", "noise"] = "real"
    outer_warmup: int = 250
    inner_warmup: int = 10
    bn_images_per_class: int = 16
    eval_at: tuple[int, ...] | None = None
    seed: int = 0
    real_grad_dtype: Literal["float32", "bfloat16"] = "float32"
    network_train_dtype: Literal["float32", "bfloat16"] = "float32"
    compile: Literal["auto", "on", "off"] = "auto"
    class_batching: Literal["auto", "on", "off"] = "auto"
    checkpoint_every: int = 10
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.ipc < 1:
            raise ConfigError(f"ipc must be a positive number of images per class, got {self.ipc}")
        _check_networks((self.network,), "network")
        if self.iterations < 0:
            raise ConfigError(f"iterations must be >= 0, got {self.iterations}")
        if (self.matching_steps is None or self.network_epochs is None) and self.ipc not in LOOP_SIZES:
            raise ConfigError(
                f"no default loop sizes for ipc={self.ipc} (known: {sorted(LOOP_SIZES)}); "
                "set matching_steps (K) and network_epochs (T) explicitly"
            )
        if self.steps < 1 or self.epochs_between_steps < 0:
            raise ConfigError("matching_steps must be >= 1 and network_epochs >= 0")
        if self.real_batch < 1:
            raise ConfigError(f"real_batch must be >= 1, got {self.real_batch}")
        if self.uses_warmup:
            if self.inner_warmup > self.steps:
                raise ConfigError(f"inner_warmup={self.inner_warmup} exceeds matching_steps={self.steps}")
            if self.outer_warmup > self.iterations:
                raise ConfigError(f"outer_warmup={self.outer_warmup} exceeds iterations={self.iterations}")
        if self.distance not in ("ours", "mse", "cos"):
            raise ConfigError(f"unknown distance {self.distance!r}; choose ours, mse or cos")
        if self.init not in ("real", "noise"):
            raise ConfigError(f"unknown init {self.init!r}; choose real or noise")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile!r}; choose auto, on or off")
        if self.class_batching not in ("auto", "on", "off"):
            raise ConfigError(f"unknown class_batching {self.class_batching!r}; choose auto, on or off")
        for name in ("real_grad_dtype", "network_train_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16"):
                raise ConfigError(f"{name} must be float32 or bfloat16, got {getattr(self, name)!r}")
        if any(it < 0 or it > self.iterations for it in self.evaluation_iterations):
            raise ConfigError(f"eval_at {self.eval_at} must lie in [0, iterations={self.iterations}]")

    # Derived quantities -------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """K: matching steps per iteration."""
        return self.matching_steps if self.matching_steps is not None else LOOP_SIZES[self.ipc][0]

    @property
    def epochs_between_steps(self) -> int:
        """T: network epochs on S between matching steps."""
        return self.network_epochs if self.network_epochs is not None else LOOP_SIZES[self.ipc][1]

    @property
    def uses_dsa(self) -> bool:
        return self.method in ("dsa", "dsac")

    @property
    def uses_warmup(self) -> bool:
        """DCC and DSAC switch from class-wise to contrastive matching; DC and DSA never do."""
        return self.method in ("dcc", "dsac")

    @property
    def evaluation_iterations(self) -> tuple[int, ...]:
        """Iterations at which the synthetic set is evaluated: 0, half-way and the end by default."""
        if self.eval_at is not None:
            return tuple(sorted(set(self.eval_at)))
        return tuple(sorted({0, self.iterations // 2, self.iterations}))

    @property
    def evaluation_augmentation(self) -> str:
        """'dsa' for DSA/DSAC, the DC code's choice otherwise ('dc' for MNIST, else 'none')."""
        if self.evaluation.augmentation != "auto":
            return self.evaluation.augmentation
        if self.uses_dsa:
            return "dsa"
        return "dc" if self.dataset == "mnist" else "none"

    # (De)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CondenseConfig":
        data = dict(data)
        data.pop("world_size", None)  # written to config.json by torchrun runs: a fact about the run, not a setting
        evaluation = data.pop("evaluation", None) or {}
        if isinstance(evaluation, dict):
            evaluation = {k: tuple(v) if isinstance(v, list) else v for k, v in evaluation.items()}
            evaluation = EvaluationConfig(**evaluation)
        if isinstance(data.get("eval_at"), list):
            data["eval_at"] = tuple(data["eval_at"])
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(evaluation=evaluation, **data)

    def same_run(self, other: "CondenseConfig") -> bool:
        """Equal up to ``compile`` and ``class_batching`` (speed, not mathematics): may resume ``other``."""
        def normalised(config: CondenseConfig) -> CondenseConfig:
            return config.replace(compile="auto", class_batching="auto", evaluation={"compile": "auto"})

        return normalised(self) == normalised(other)

    def replace(self, **changes: Any) -> "CondenseConfig":
        """A copy with some fields changed; ``evaluation`` may be given as a dict of changes."""
        evaluation = changes.pop("evaluation", None)
        if isinstance(evaluation, dict):
            changes["evaluation"] = dataclasses.replace(self.evaluation, **evaluation)
        elif evaluation is not None:
            changes["evaluation"] = evaluation
        return dataclasses.replace(self, **changes)


def _describe(annotation: object) -> str:
    """What a value of type ``annotation`` looks like on the command line, for error messages."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a comma-separated list ({_describe(args[0]) if args else 'values'} each)"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "text", type(None): "none"}.get(annotation, str(annotation))


def _convert(text: str, annotation: object) -> object:
    """``text`` as a value of type ``annotation``; ``ValueError`` if it is not one."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        if text.lower() in ("none", "null"):
            return None
        raise ValueError(text)
    if origin in (typing.Union, types.UnionType):
        for option in sorted(args, key=lambda a: a is not type(None)):  # "none" first, then the others
            try:
                return _convert(text, option)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is Literal:
        if text in args:
            return text
        raise ValueError(text)
    if origin is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            items = json.loads(stripped)  # JSONDecodeError is a ValueError
            if not isinstance(items, list):
                raise ValueError(text)
            items = [str(i) for i in items]
        else:
            items = [v.strip() for v in stripped.split(",") if v.strip()]
        return tuple(_convert(item, args[0]) for item in items) if args else tuple(items)
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if annotation is int:
        return int(text.strip())
    if annotation is float:
        value = float(text.strip())
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if annotation is str:
        return text
    raise ValueError(f"cannot set a {annotation} field from the command line")


def parse_field(text: str, annotation: object, name: str = "value") -> object:
    """Parse command-line ``text`` for a dataclass field ``name`` whose type annotation is ``annotation``.

    ``int``, ``float`` (finite), ``bool`` (true/false), ``str``, ``Literal`` choices, ``X | None``
    (``none``/``null``) and ``tuple[X, ...]`` (``a,b,c`` or a JSON list ``[1, 2]``), each item
    checked. Anything else is a :class:`ConfigError` naming the field and what it expects.
    """
    try:
        return _convert(text, annotation)
    except ValueError:
        raise ConfigError(f"{name}={text}: expected {_describe(annotation)}") from None


def parse_overrides(pairs: list[str]) -> dict:
    """``["iterations=20", "evaluation.num_networks=3"]`` → a dict for ``CondenseConfig.replace``."""
    top_hints = typing.get_type_hints(CondenseConfig)
    eval_hints = typing.get_type_hints(EvaluationConfig)
    changes: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects field=value, got {pair!r}")
        key, text = pair.split("=", 1)
        if key.startswith("evaluation."):
            field = key.split(".", 1)[1]
            if field not in eval_hints:
                raise ConfigError(f"unknown evaluation field {field!r}; known: {', '.join(eval_hints)}")
            changes.setdefault("evaluation", {})[field] = parse_field(text, eval_hints[field], key)
        elif key in top_hints and key != "evaluation":
            changes[key] = parse_field(text, top_hints[key], key)
        else:
            raise ConfigError(f"unknown config field {key!r}; known: {', '.join(k for k in top_hints if k != 'evaluation')}, evaluation.*")
    return changes
