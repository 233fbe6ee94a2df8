"""The registry mechanism: registration, typed options, presets, prefixes, plug-ins."""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from typing import Literal

import pytest

from balgrad.errors import ConfigError
from balgrad.registry import Registry, RegistryWarning


def make_registry(**kw) -> Registry:
    reg = Registry("widget", metadata={"label": None, "size": 1}, inherit=("size",), **kw)

    @reg.register("plain", aliases=("basic",), label="Plain")
    def plain(*, depth: int = 2, scale: float = 1.0, on: bool = True, mode: str = "a"):
        return {"depth": depth, "scale": scale, "on": on, "mode": mode}

    @reg.register("choice")
    def choice(kind: Literal["x", "y"] = "x", path: object = None, **extra):
        return {"kind": kind, "path": path, **extra}

    return reg


def test_create_passes_validated_options_and_aliases_resolve():
    reg = make_registry()
    assert reg.create("plain", depth=3) == {"depth": 3, "scale": 1.0, "on": True, "mode": "a"}
    # YAML 1.1 reads 1e-3 as a string; a float option converts it
    assert reg.create("basic", scale="1e-3")["scale"] == 0.001
    assert reg.canonical("basic") == "plain" and reg.metadata("basic")["label"] == "Plain"
    reg.alias("simple", "basic")
    assert reg.create("simple")["depth"] == 2 and reg.get("plain").aliases == ("basic", "simple")


def test_options_have_types_and_defaults_from_the_signature():
    opts = make_registry().options("plain")
    assert [str(o) for o in opts.values()] == [
        "depth: int = 2",
        "scale: float = 1.0",
        "on: bool = True",
        "mode: str = 'a'",
    ]
    assert str(make_registry().options("choice")["kind"]) == "kind: 'x' | 'y' = 'x'"


@pytest.mark.parametrize(
    "options,expected",
    [
        ({"on": "false"}, r"widget 'plain': option 'on' expects bool, got 'false' \(str\)"),
        ({"on": 1}, r"option 'on' expects bool, got 1 \(int\)"),
        ({"depth": True}, r"option 'depth' expects int, got True \(bool\)"),
        ({"depth": 2.5}, r"option 'depth' expects int, got 2.5"),
        ({"scale": "abc"}, r"option 'scale' expects float, got 'abc'"),
        ({"scale": True}, r"option 'scale' expects float, got True"),
        ({"mode": 3}, r"option 'mode' expects str, got 3"),
    ],
)
def test_bad_values_name_the_entry_option_value_and_type(options, expected):
    with pytest.raises(ConfigError, match=expected):
        make_registry().create("plain", **options)


def test_literal_options_keep_their_choices():
    with pytest.raises(ConfigError, match=r"option 'kind' expects 'x' \| 'y', got 'z'"):
        make_registry().create("choice", kind="z")


def test_unknown_option_lists_the_valid_ones_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown option 'dept' \(did you mean 'depth'\?\); "):
        make_registry().create("plain", dept=1)
    # **kwargs takes anything, unchecked; an untyped/unsupported annotation is not checked
    assert make_registry().create("choice", colour="red", path=object())["colour"] == "red"


def test_unknown_name_lists_names_and_aliases():
    with pytest.raises(ConfigError, match=r"unknown widget 'plian'.*known: plain, choice, basic"):
        make_registry().create("plian")


def test_presets_fix_options_that_stay_overridable_and_inherit_declared_metadata():
    reg = make_registry()

    @reg.register("big", size=5, label="Big")
    def big(*, n: int) -> int:
        return n

    reg.register_preset("big3", "big", {"n": 3}, label="Big three")
    assert reg.create("big3") == 3 and reg.create("big3", n=4) == 4
    assert reg.options("big3")["n"].default == 3 and reg.options("big")["n"].required
    assert reg.metadata("big3") == {"label": "Big three", "size": 5}
    assert reg.get("big3").base == "big"
    with pytest.raises(ConfigError, match="option 'n' expects int"):
        reg.register_preset("bad", "big", {"n": "three"})


def test_prefix_entries_take_the_rest_of_the_name_and_bound_arguments():
    reg = Registry("backbone", normalize=str.lower)
    reg.register("hub:", lambda name, *, clip, width=1: (name, clip, width), bind={"clip": True})
    assert reg.create("HUB:Org/Model", width=2) == ("Org/Model", True, 2)
    assert list(reg.options("hub:x")) == ["width"]  # the name and bound arguments are not options
    with pytest.raises(ConfigError, match="must follow the colon"):
        reg.create("hub:")


def test_registration_mistakes_are_caught():
    reg = make_registry()
    with pytest.raises(TypeError, match="unknown registration field.*lable"):
        reg.register("x", dict, lable="X")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("plain", dict)
    reg.unregister("plain")
    assert "plain" not in reg and "basic" not in reg


def test_lazy_import_path_targets_load_on_first_use():
    reg = Registry("thing")
    reg.register("od", "collections:OrderedDict")
    reg.register("missing", "no_such_module_for_balgrad:thing")
    assert reg.create("od", a=1) == {"a": 1}
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_for_balgrad:thing'"):
        reg.create("missing")


def test_check_vets_what_an_entry_built():
    def check(name, obj):
        if not isinstance(obj, dict):
            raise ConfigError(f"{name} built a {type(obj).__name__}")

    reg = Registry("thing", check=check)
    reg.register("ok", dict)
    reg.register("bad", list)
    assert reg.create("ok") == {}
    with pytest.raises(ConfigError, match="bad built a list"):
        reg.create("bad")


# -- entry points --------------------------------------------------------------------------
@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution 'fake-widgets' declaring three entry points of group
    balgrad_test.widgets: one that registers itself, one adopted, one that is broken."""
    (tmp_path / "fake_widgets_mod.py").write_text(
        textwrap.dedent(
            """
            from balgrad_test_registry import REG

            @REG.register("decorated", label="Decorated widget")
            def decorated(*, level: int = 1):
                return ("decorated", level)

            def adopted(*, level: int = 2):
                return ("adopted", level)
            """
        )
    )
    info = tmp_path / "fake_widgets-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-widgets\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[balgrad_test.widgets]\n"
        "decorated = fake_widgets_mod:decorated\n"
        "adopted = fake_widgets_mod:adopted\n"
        "broken = no_such_module_for_balgrad:thing\n"
    )
    reg = make_registry(group="balgrad_test.widgets")
    monkeypatch.setitem(sys.modules, "balgrad_test_registry", type(sys)("balgrad_test_registry"))
    sys.modules["balgrad_test_registry"].REG = reg
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield reg
    sys.modules.pop("fake_widgets_mod", None)


def test_entry_points_load_lazily_on_the_first_lookup_of_their_name(installed):
    assert installed.create("plain")["depth"] == 2  # a built-in lookup imports no plug-in
    assert "fake_widgets_mod" not in sys.modules
    assert installed.create("decorated", level=3) == ("decorated", 3)
    entry = installed.get("decorated")
    assert entry.metadata["label"] == "Decorated widget"
    assert (
        "fake-widgets" in entry.origin and "decorated = fake_widgets_mod:decorated" in entry.origin
    )
    # an object registered without the decorator is adopted under its entry-point name
    assert installed.create("adopted") == ("adopted", 2)
    with pytest.raises(ConfigError, match="option 'level' expects int"):
        installed.create("adopted", level="high")


def test_a_broken_entry_point_is_named_and_never_breaks_the_others(installed):
    with pytest.warns(
        RegistryWarning, match=r"'broken = no_such_module_for_balgrad:thing'.*fake-widgets"
    ):
        names = installed.names()
    assert names == ["plain", "choice", "decorated", "adopted"]
    with pytest.raises(ConfigError, match="fake-widgets.*failed to load: ModuleNotFoundError"):
        installed.create("broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert installed.create("basic", depth=1)["depth"] == 1


def test_a_plugin_never_replaces_a_built_in(installed, tmp_path):
    (tmp_path / "fake_widgets_mod.py").write_text(
        "from balgrad_test_registry import REG\nREG.register('plain', dict)\n"
        "def decorated(): return 'x'\nadopted = decorated\n"
    )
    importlib.invalidate_caches()
    with pytest.warns(RegistryWarning, match="registers the widget 'plain'.*ignored"):
        installed.create("decorated")
    assert installed.create("plain")["mode"] == "a"


def test_registrations_with_an_unknown_strategy_role_or_dataset_kind_are_refused():
    from balgrad.data._catalog import register_dataset
    from balgrad.strategies import Joint, register_strategy

    with pytest.raises(ConfigError, match="role must be one of"):
        register_strategy("odd_role_test", Joint, role="propsed")
    with pytest.raises(ConfigError, match="kind must be one of"):
        register_dataset("odd_kind_test", dict, kind="generated")
