"""Training strategies: objects that replace ``loss.backward()``."""

from balgrad.strategies._agm import AGM
from balgrad.strategies._balgrad import BalGrad
from balgrad.strategies._balgrad_fast import BalGradFast
from balgrad.strategies._base import BalancedModel, EpochBatches, Strategy
from balgrad.strategies._checks import PendingChecks
from balgrad.strategies._context import StepContext
from balgrad.strategies._dgl import DGL
from balgrad.strategies._gblend import GBlend
from balgrad.strategies._inforeg import InfoReg
from balgrad.strategies._joint import Joint
from balgrad.strategies._mla import MLA
from balgrad.strategies._mmpareto import MMPareto
from balgrad.strategies._mslr import MSLR
from balgrad.strategies._ogm_ge import OGMGE
from balgrad.strategies._pmr import PMR
from balgrad.strategies._registry import (
    STRATEGY_REGISTRY,
    create_strategy,
    list_strategies,
    register_preset,
    register_strategy,
    strategy_options,
)

__all__ = [
    "AGM",
    "BalGrad",
    "BalGradFast",
    "BalancedModel",
    "DGL",
    "EpochBatches",
    "GBlend",
    "InfoReg",
    "Joint",
    "MLA",
    "MMPareto",
    "MSLR",
    "OGMGE",
    "PMR",
    "PendingChecks",
    "STRATEGY_REGISTRY",
    "StepContext",
    "Strategy",
    "create_strategy",
    "list_strategies",
    "register_preset",
    "register_strategy",
    "strategy_options",
]
