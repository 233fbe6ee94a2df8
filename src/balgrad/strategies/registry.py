"""``create_strategy(name, **options)``: one name space for the CLI, YAML and Python."""

from __future__ import annotations

import inspect

from balgrad.errors import ConfigError
from balgrad.strategies.agm import AGM
from balgrad.strategies.balgrad import BalGrad
from balgrad.strategies.balgrad_fast import BalGradFast
from balgrad.strategies.base import Strategy
from balgrad.strategies.joint import Joint
from balgrad.strategies.mslr import MSLR
from balgrad.strategies.ogm_ge import OGMGE

STRATEGIES: dict[str, type[Strategy]] = {
    "joint": Joint,
    "balgrad": BalGrad,
    "balgrad_fast": BalGradFast,
    "ogm_ge": OGMGE,
    "agm": AGM,
    "mslr": MSLR,
}

#: Named presets: the paper's ablations (Table 2) and SPEC section 2's third one.
PRESETS: dict[str, tuple[str, dict]] = {
    "balgrad_projection_only": ("balgrad", {"reweight": "none"}),
    "balgrad_reweight_only": ("balgrad", {"project": False}),
    "balgrad_unimodal_only": ("balgrad", {"kl_weight": 0.0, "project": False, "reweight": "none"}),
}

ALIASES = {"baseline": "joint", "ogm-ge": "ogm_ge", "ogm": "ogm_ge"}


def strategy_options(name: str) -> dict[str, object]:
    """The options a strategy accepts, with their defaults (a preset's own values included)."""
    base, preset = resolve_name(name)
    sig = inspect.signature(STRATEGIES[base].__init__)
    return {**{k: p.default for k, p in sig.parameters.items() if k != "self"}, **preset}


def resolve_name(name: str) -> tuple[str, dict]:
    key = ALIASES.get(name, name)
    if key in STRATEGIES:
        return key, {}
    if key in PRESETS:
        base, opts = PRESETS[key]
        return base, dict(opts)
    known = sorted([*STRATEGIES, *PRESETS])
    raise ConfigError(f"strategy: unknown strategy {name!r}; known: {', '.join(known)}")


def create_strategy(name: str, **options) -> Strategy:
    """Create a strategy by name; unknown names or options raise ConfigError naming them."""
    base, preset = resolve_name(name)
    allowed = strategy_options(base)
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"strategy {name!r}: unknown option {key!r}; options: {', '.join(sorted(allowed)) or 'none'}"
            )
    return STRATEGIES[base](**{**preset, **options})


def list_strategies() -> list[str]:
    return [*STRATEGIES, *PRESETS]
