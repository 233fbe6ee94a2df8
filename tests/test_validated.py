"""registry.validated: an annotated signature checked on every call, direct or by name, with
the registry's strictness and message style."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pytest
from pydantic import Field

from balgrad.data.readers._digits import DigitsConfig
from balgrad.errors import ConfigError
from balgrad.registry import validated
from balgrad.strategies import create_strategy
from balgrad.strategies._balgrad import BalGrad
from balgrad.strategies._balgrad_fast import BalGradFast


@validated
def _scaled(x: Annotated[float, Field(gt=0)] = 1.0, n: int = 1, mode: Literal["a", "b"] = "a"):
    return x, n, mode


def test_a_direct_call_is_checked_as_one_by_name():
    with pytest.raises(ConfigError, match=r"^BalGrad: option 'temperature' expects float > 0"):
        BalGrad(temperature=-1.0)
    with pytest.raises(ConfigError, match=r"^strategy 'balgrad': option 'temperature' expects"):
        create_strategy("balgrad", temperature=-1.0)
    with pytest.raises(ConfigError, match=r"'reweight' expects 'contribution' \| 'none'"):
        BalGrad(reweight="softmax")


@pytest.mark.parametrize("value", [True, 2.0, "2"])
def test_an_int_option_refuses_a_bool_a_float_and_a_string(value):
    with pytest.raises(ConfigError, match="'head_diagnostics_every' expects int >= 1"):
        BalGrad(head_diagnostics_every=value)


def test_a_subclass_widens_an_inherited_option_by_a_class_annotation():
    assert BalGradFast(projection_scope="per_sample").projection_scope == "per_sample"
    with pytest.raises(
        ConfigError, match=r"'projection_scope' expects 'global' \| 'per_modality', got"
    ):
        BalGrad(projection_scope="per_sample")
    scope = create_strategy("balgrad_fast", projection_scope="per_sample").projection_scope
    assert scope == "per_sample"


def test_values_are_converted_defaults_left_alone_and_wrong_calls_stay_typeerrors():
    assert _scaled("1e-3") == (0.001, 1, "a")
    assert _scaled(x=2, n=np.int64(3)) == (2.0, 3, "a")  # a numpy integer is an integer
    with pytest.raises(ConfigError, match=r"^_scaled: option 'x' expects float > 0, got 0"):
        _scaled(0)
    with pytest.raises(ConfigError, match=r"_scaled: option 'n' expects int, got 1.5"):
        _scaled(n=1.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        _scaled(y=1)


def test_a_dataclass_is_checked_at_construction():
    @validated
    @dataclass(frozen=True)
    class Settings:
        size: Annotated[int, Field(ge=1)] = 4
        fraction: Annotated[float, Field(ge=0, le=1)] = 0.5

    assert Settings(size=2, fraction=1) == Settings(2, 1.0)
    with pytest.raises(
        ConfigError, match=r"^Settings: option 'fraction' expects float in \[0, 1\]"
    ):
        Settings(fraction=1.5)
    with pytest.raises(ConfigError, match=r"^DigitsConfig: option 'dominant' expects 'text' \|"):
        DigitsConfig(dominant="audio")
    assert DigitsConfig(n_train=np.int64(10)).n_train == 10
