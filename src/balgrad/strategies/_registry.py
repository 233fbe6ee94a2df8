"""``create_strategy(name, **options)``: one name space for the CLI, YAML and Python.

The built-in strategies, the paper's ablations (registered presets of ``balgrad``) and
what installed packages declare in the entry-point group ``balgrad.strategies`` live in
one :class:`~balgrad.registry.Registry`. A strategy's registration carries what the rest
of balgrad needs to know about it:

- ``label``: its name in tables, figures and ``report.md`` (default: the name);
- ``description``: one line for ``balgrad list``;
- ``run_seed``: it takes a ``seed`` option that each run fills with its own seed;
- ``role``: ``"reference"`` (the method report.md compares every other to: joint
  training), ``"proposed"`` (BalGrad), ``"ablation"`` (a variant of it) or ``"other"``;
- ``ablation_order``: its column in the ablation table (Table 2), None: not there;
- ``default_run``: ``balgrad compare`` trains it when no ``methods`` are given (only
  built-ins: an installed plug-in never joins the default run by itself).

Write your own (README, "Write your own strategy")::

    @register_strategy("grad_blend", label="Grad blend")
    class GradBlend(Strategy):
        def __init__(self, *, blend: float = 0.5): ...
        def compute(self, model, output, target, ctx) -> dict: ...
"""

from __future__ import annotations

from typing import Any

from balgrad.errors import ConfigError
from balgrad.registry import Registry
from balgrad.strategies._agm import AGM
from balgrad.strategies._balgrad import BalGrad
from balgrad.strategies._balgrad_fast import BalGradFast
from balgrad.strategies._base import Strategy
from balgrad.strategies._dgl import DGL
from balgrad.strategies._gblend import GBlend
from balgrad.strategies._inforeg import InfoReg
from balgrad.strategies._joint import Joint
from balgrad.strategies._mla import MLA
from balgrad.strategies._mmpareto import MMPareto
from balgrad.strategies._mslr import MSLR
from balgrad.strategies._ogm_ge import OGMGE
from balgrad.strategies._pmr import PMR

ROLES = ("reference", "proposed", "ablation", "other")


def _check_strategy(name: str, obj: Any) -> None:
    if not isinstance(obj, Strategy):
        raise ConfigError(
            f"strategy {name!r} built a {type(obj).__name__}, not a balgrad.strategies.Strategy"
        )


def _is_strategy_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Strategy)


#: names that stand for several methods in ``--methods`` and a config's ``methods``
METHOD_SETS = {
    "paper": "the paper's comparison: Baseline, MSLR, OGM-GE, AGM, BalGrad and its ablations "
    "(the default)",
    "field": "every registered method, without the ablation presets",
    "all": "every registered strategy and preset, plug-ins included",
}


def _check_registration(name: str, meta: dict[str, Any]) -> None:
    if name in METHOD_SETS:
        raise ConfigError(
            f"strategy {name!r}: the name stands for a set of methods in --methods; "
            "register it under another name"
        )
    if meta["role"] not in ROLES:
        raise ConfigError(f"strategy {name!r}: role must be one of {ROLES}, got {meta['role']!r}")
    order = meta["ablation_order"]
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise ConfigError(f"strategy {name!r}: ablation_order must be an int or None")


STRATEGY_REGISTRY = Registry(
    "strategy",
    group="balgrad.strategies",
    metadata={
        "label": None,
        "description": "",
        "run_seed": False,
        "role": "other",
        "ablation_order": None,
        "default_run": False,
    },
    inherit=("run_seed",),
    check=_check_strategy,
    check_metadata=_check_registration,
    adopt=_is_strategy_class,
)
#: ``@register_strategy("name", label=..., run_seed=..., role=..., ablation_order=...)``
register_strategy = STRATEGY_REGISTRY.register
#: ``register_preset("name", "base", {option: value}, label=...)``
register_preset = STRATEGY_REGISTRY.register_preset

# the order of registration is the order of the default run's methods
register_strategy(
    "joint",
    Joint,
    aliases=("baseline",),
    label="Baseline",
    description="task loss only (joint training)",
    role="reference",
    ablation_order=0,
    default_run=True,
)
register_strategy(
    "mslr",
    MSLR,
    label="MSLR",
    description="a learning rate per modality (Yao & Mihalcea, 2022)",
    default_run=True,
)
register_strategy(
    "ogm_ge",
    OGMGE,
    aliases=("ogm-ge", "ogm"),
    label="OGM-GE",
    description="on-the-fly gradient modulation with generalisation enhancement (CVPR 2022)",
    run_seed=True,
    default_run=True,
)
register_strategy(
    "agm",
    AGM,
    label="AGM",
    description="adaptive gradient modulation (ICCV 2023)",
    default_run=True,
)
register_strategy(
    "balgrad",
    BalGrad,
    label="BalGrad",
    description="reweighted KL gradients, task gradient projected off them (NAACL 2025)",
    role="proposed",
    ablation_order=4,
    default_run=True,
)
# the paper's ablations (Table 2) and SPEC section 2's third one
register_preset(
    "balgrad_reweight_only",
    "balgrad",
    {"project": False},
    label="w/ reweighting",
    description="BalGrad without its projection: the reweighted KL gradients only (paper Table 2)",
    role="ablation",
    ablation_order=1,
    default_run=True,
)
register_preset(
    "balgrad_projection_only",
    "balgrad",
    {"reweight": "none"},
    label="w/ projection",
    description="BalGrad without its reweighting: the projection, KL gradients unweighted (paper Table 2)",
    role="ablation",
    ablation_order=2,
    default_run=True,
)
register_preset(
    "balgrad_unimodal_only",
    "balgrad",
    {"kl_weight": 0.0, "project": False, "reweight": "none"},
    label="unimodal losses only",
    description="the auxiliary unimodal losses alone: no KL term, no projection (SPEC section 2)",
    role="ablation",
    ablation_order=3,
    default_run=True,
)
register_strategy(
    "balgrad_fast",
    BalGradFast,
    label="BalGrad (fast)",
    description="BalGrad's geometry at the embeddings h_m: one backward pass",
    role="proposed",
)
# the field's methods beyond the paper's comparison: registered for compare, evaluate,
# report and `balgrad list`, never in the default run (which stays the paper's eight)
register_strategy(
    "mmpareto",
    MMPareto,
    label="MMPareto",
    description="MinNorm of multimodal and unimodal gradients per encoder, magnitude kept (ICML 2024)",
)
register_strategy(
    "dgl",
    DGL,
    label="DGL",
    description="encoders by the unimodal losses only, head by the detached fusion loss (ICCV 2025)",
)
# the official scripts' α per dataset (ICCV2025-GDL @ b72a55f: cramed_dgl.sh runs α 4
# and 5 and records 77.48 / 78.12; ks_dgl.sh runs 2 and 3 and records 74.78 / 76.28)
register_preset(
    "dgl_cremad",
    "dgl",
    {"alpha": 5.0},
    label="DGL (CREMA-D)",
    description="dgl with the official CREMA-D script's best recorded alpha (5)",
)
register_preset(
    "dgl_ks",
    "dgl",
    {"alpha": 3.0},
    label="DGL (Kinetics-Sounds)",
    description="dgl with the official Kinetics-Sounds script's best recorded alpha (3)",
)
register_strategy(
    "pmr",
    PMR,
    label="PMR",
    description="prototypical modal rebalance: the slow modality's prototype cross-entropy "
    "(CVPR 2023)",
)
# the official CREMA-D runs (Modal-Imbalance-PMR @ 3615e48, bash.sh: main_Prototype_grad.py
# with concat and the Adam / AdaGrad variants, and the main_Proto_PER.py runs of every
# fusion but film: --alpha 2.0 --modulation_starts 0 --modulation_ends 70 --momentum_coef 0.0)
register_preset(
    "pmr_cremad",
    "pmr",
    {"alpha": 2.0, "momentum_coef": 0.0, "modulation_start": 0, "modulation_end": 70},
    label="PMR (CREMA-D)",
    description="pmr with the official CREMA-D script's options (alpha 2, no prototype "
    "momentum, prototype term in epochs 0-70)",
)
register_strategy(
    "inforeg",
    InfoReg,
    label="InfoReg",
    description="the leading modality pulled back to its epoch-start weights while its "
    "information still grows (CVPR 2025)",
)

register_strategy(
    "mla",
    MLA,
    label="MLA",
    description="alternating unimodal steps through a shared head, entropy-weighted "
    "test-time fusion (CVPR 2024)",
)
register_strategy(
    "gblend",
    GBlend,
    aliases=("g-blend", "gradient_blending"),
    label="G-Blend",
    description="gradient blending: the fused and unimodal losses weighted by their "
    "generalisation over overfitting, estimated on held-out data (CVPR 2020)",
)


# -- the public functions --------------------------------------------------------------
def create_strategy(name: str, **options: Any) -> Strategy:
    """Create a strategy by name; an unknown name, option or a bad value raises
    ConfigError naming it (types from the strategy's annotations, strict for booleans
    and integers).

    Args:
        name: A strategy, preset or alias name (:func:`list_strategies`).
        **options: The strategy's options, by name (see its API page).

    Returns:
        The strategy.

    Raises:
        ConfigError: An unknown name or option, or a bad value.

    Example:
        >>> import balgrad
        >>> balgrad.create_strategy("ogm_ge", alpha=0.5).alpha
        0.5
    """
    return STRATEGY_REGISTRY.create(name, **options)


def list_strategies() -> list[str]:
    """Every strategy and preset name, installed plug-ins included (aliases left out).

    Returns:
        The names, sorted as registered.
    """
    return STRATEGY_REGISTRY.names()


def strategy_options(name: str) -> dict[str, object]:
    """The options a strategy accepts, with their defaults (a preset's own values included).

    Args:
        name: A strategy, preset or alias name.

    Returns:
        ``{option: default}``.
    """
    return STRATEGY_REGISTRY.defaults(name)


def validate_strategy(name: str, options: dict[str, Any]) -> None:
    """Raise ConfigError unless ``create_strategy(name, **options)`` would succeed; the
    strategy's own value checks run too (it is created once and dropped).

    Args:
        name: A strategy name.
        options: Its options.

    Raises:
        ConfigError: The name, an option or a value is bad.
    """
    checked = STRATEGY_REGISTRY.validate(name, options)  # names, types: errors name the method
    try:
        create_strategy(name, **checked)
    except ConfigError as err:  # the strategy's own value checks
        raise ConfigError(f"strategy {name!r}: {err}") from None
    except Exception as err:  # noqa: BLE001 - e.g. a plug-in's own check
        raise ConfigError(f"strategy {name!r}: {type(err).__name__}: {err}") from None


def strategy_info(name: str) -> dict[str, Any]:
    """A strategy's registration metadata, with ``label`` filled in.

    Args:
        name: A strategy, preset or alias name.

    Returns:
        The metadata (label, description, role, base...).

    Raises:
        ConfigError: An unknown name.
    """
    entry = STRATEGY_REGISTRY.get(name)
    return {**entry.metadata, "label": entry.metadata["label"] or name, "base": entry.base}


def _info_or_none(name: str) -> dict[str, Any] | None:
    try:
        return strategy_info(name)
    except ConfigError:  # a run folder of a plug-in that is not installed here
        return None


def method_label(name: str) -> str:
    """The label tables and figures show (the name itself when it is not registered).

    Args:
        name: A method name.

    Returns:
        The label.
    """
    info = _info_or_none(name)
    return info["label"] if info else name


def method_description(name: str) -> str:
    """The registered one-line description ("" for a method not registered here).

    Args:
        name: A method name.

    Returns:
        The description.
    """
    info = _info_or_none(name)
    return info["description"] if info else ""


def method_role(name: str) -> str:
    """A method's registered role (one of ``ROLES``).

    Args:
        name: A method name.

    Returns:
        The role, ``"other"`` for a method not registered here.
    """
    info = _info_or_none(name)
    return info["role"] if info else "other"


def ablation_order(name: str) -> int | None:
    """Where an ablation sorts in tables (its registered ``ablation_order``).

    Args:
        name: A method name.

    Returns:
        The order, or None for a method that is not a registered ablation.
    """
    info = _info_or_none(name)
    return info["ablation_order"] if info else None


def method_set(name: str) -> list[str] | None:
    """The methods a set name stands for (see :data:`METHOD_SETS`); None for a method.

    Args:
        name: A name.

    Returns:
        The set's methods, or None.
    """
    if name == "paper":
        return default_methods()
    if name == "all":
        return list_strategies()
    if name == "field":
        return [n for n in list_strategies() if strategy_info(n).get("role") != "ablation"]
    return None


def expand_method_sets(methods: list[str]) -> list[str]:
    """``methods`` with every set name replaced by its methods. A method a set adds is
    left out where it is already listed (so ``["balgrad", "all"]`` trains BalGrad first,
    once); a method the user lists twice stays twice, for the duplicate check to name.

    Args:
        methods: Method and set names (``"paper"``, ``"all"``, ``"field"``).

    Returns:
        Method names.
    """
    named = [m for m in methods if not (isinstance(m, str) and method_set(m))]
    out: list[str] = []
    for name in methods:
        members = method_set(name) if isinstance(name, str) else None
        if members is None:
            out.append(name)
            continue
        out += [m for m in members if m not in out and m not in named]
    return out


def default_methods() -> list[str]:
    """What ``balgrad compare`` trains when no methods are given (built-ins only).

    Returns:
        The method names, in registration order.
    """
    return [
        e.name
        for e in STRATEGY_REGISTRY.entries(plugins=False)
        if e.metadata["default_run"] and e.origin == "balgrad"
    ]
