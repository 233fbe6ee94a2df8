"""Training strategies: objects that replace ``loss.backward()``."""

from balgrad.strategies.agm import AGM
from balgrad.strategies.balgrad import BalGrad
from balgrad.strategies.base import BalancedModel, Strategy
from balgrad.strategies.context import StepContext
from balgrad.strategies.dgl import DGL
from balgrad.strategies.inforeg import InfoReg
from balgrad.strategies.joint import Joint
from balgrad.strategies.mla import MLA
from balgrad.strategies.mmpareto import MMPareto
from balgrad.strategies.mslr import MSLR
from balgrad.strategies.ogm_ge import OGMGE
from balgrad.strategies.registry import (
    STRATEGY_REGISTRY,
    create_strategy,
    list_strategies,
    register_preset,
    register_strategy,
    strategy_options,
)

__all__ = [
    "AGM",
    "DGL",
    "InfoReg",
    "MLA",
    "MSLR",
    "MMPareto",
    "OGMGE",
    "STRATEGY_REGISTRY",
    "StepContext",
    "BalGrad",
    "BalancedModel",
    "Joint",
    "Strategy",
    "create_strategy",
    "list_strategies",
    "register_preset",
    "register_strategy",
    "strategy_options",
]
