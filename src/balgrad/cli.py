"""The ``balgrad`` command line: train, compare, evaluate, report, list.

Every option of :class:`balgrad.config.RunConfig` is a flag of the same name (dashes for
underscores) and a key of the YAML file given with ``--config``; flags override the file.

The flags are generated from the fields' annotations with argparse (:func:`_field_flag`),
not with pydantic-settings (``CliApp``) or jsonargparse. Both were tried on the 16
spellings that the README, the docs and tests/test_cli_config.py use (pydantic-settings
2.16, jsonargparse 4.53, each built from ``RunConfig`` as is): each gave today's config for
4 of them. Neither has a repeatable ``M=NAME`` or ``METHOD.KEY=VALUE`` item flag
(``--backbone audio=resnet18``, ``--method-option balgrad.kl_weight=0.5``, ``--noise``,
``--dataset-option``), the shorthands (``--image-backbone``), or space-separated lists
(``--methods joint balgrad``, ``--seeds 1 2 3``: both want ``[a,b]`` or a repeated flag,
in jsonargparse ``--methods+ a``, which appends to the default list).
pydantic-settings hands ``--epochs 3`` to the model as the text ``"3"``, which
``RunConfig``'s strict integers refuse (as they must refuse ``epochs: "3"`` in a file), and
keeps ``--dataset-options n_train=500`` as the text ``"500"``. jsonargparse spells flags with
underscores only (``--data_dir``), has no ``--no-sweep`` (``--sweep false``), applies
``--config`` where it stands in argv (``--epochs 5 --config f.yaml`` takes the file's
epochs), and reads neither presets by name nor the 0.1 keys' upgrade
(:func:`balgrad.config.load_yaml`). The item flags, the shorthands and the file merge, most
of this code, stay hand-written beside either library: a prototype in which
pydantic-settings made only the per-field flags (through a second model, since its text
values fail ``RunConfig``'s strict checks) was 5 lines longer than :func:`_field_flag` and
its loop, failed 3 tests of tests/test_cli_config.py (``--methods joint balgrad``), and
printed types for metavars in ``--help`` (``--data-dir {str,null}``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any

import yaml

from balgrad.config import (
    RunConfig,
    build_config,
    check_methods,
    default_methods,
    load_run_config,
    load_yaml,
    parse_noise,
)
from balgrad.config_upgrade import FLAT_KEYS, shorthand_settings
from balgrad.errors import BalgradError, ConfigError, Interrupted
from balgrad.train._distributed import end_distributed

#: flags that set one item of a mapping, repeatable: dest -> (flag, metavar, where the item
#: goes (one ``{}`` per dotted part of the key before ``=``), help). A ``VALUE`` is read as
#: YAML (``0.5``, ``false``); a ``NAME`` or ``LEVEL`` is kept as written (``10db`` is an SNR).
ITEM_FLAGS = {
    "dataset_options": (
        "--dataset-option",
        "KEY=VALUE",
        "dataset_options.{}",
        "a dataset option, e.g. dominant=image (repeatable)",
    ),
    "method_options": (
        "--method-option",
        "METHOD.KEY=VALUE",
        "method_options.{}.{}",
        "a strategy option, e.g. balgrad.kl_weight=0.5 (repeatable)",
    ),
    # the ``modalities`` field's (the docs' table finds them by the dest's prefix)
    "modality_backbone": (
        "--backbone",
        "M=NAME",
        "modalities.{}.backbone",
        "the backbone of modality M, e.g. audio=resnet18 (repeatable)",
    ),
    "modality_backbone_option": (
        "--backbone-option",
        "M.KEY=VALUE",
        "modalities.{}.backbone_options.{}",
        "an option of modality M's backbone, e.g. image.width=32 or audio.n_mels=64 (repeatable)",
    ),
    "modality_noise": (
        "--noise",
        "M=LEVEL",
        "modalities.{}.noise",
        "the noisy_<M> level in M's kind's unit, e.g. audio=10db (an SNR), visual=0.5 (repeatable)",
    ),
}
#: the documented shorthands of the modalities ``image`` and ``text`` (of those kinds),
#: ``--image-backbone`` and so on: flag -> (its 0.1 key, which
#: :func:`balgrad.config_upgrade.shorthand_settings` turns into settings, type, long form)
SHORTHAND_FLAGS = {
    "--" + key.replace("_", "-"): (
        key,
        float if setting == "noise" else str,
        f"--{setting} {m}={'LEVEL' if setting == 'noise' else 'NAME'}",
    )
    for key, (m, setting) in FLAT_KEYS.items()
}


def _field_flag(annotation: Any) -> dict[str, Any]:
    """argparse's keywords for a field of this annotation: ``--sweep/--no-sweep`` for a
    bool, ``--seeds 1 2 3`` for a list, the choices of a Literal, else one typed value."""
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is list:
        return {"nargs": "+", "type": args[0]}
    if typing.get_origin(annotation) is typing.Literal:
        return {"choices": args}
    return {"type": args[0] if args else annotation}  # int, float, str, or X | None


def _add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag per field of :class:`RunConfig` (an item flag for a mapping), and ``--config``."""
    g = p.add_argument_group("run options (also YAML keys of --config)")
    g.add_argument(
        "--config", help="YAML file of options (same names as the flags)", default=argparse.SUPPRESS
    )
    for name, field in RunConfig.model_fields.items():
        if name in skip:
            continue
        if name == "modalities":
            _add_item_flags(g, [d for d in ITEM_FLAGS if d.startswith("modality_")])
            _add_shorthand_flags(g, noise_only=False)
        elif name in ITEM_FLAGS:
            _add_item_flags(g, [name])
        else:
            default = field.get_default(call_default_factory=True)
            g.add_argument(
                "--" + name.replace("_", "-"),
                dest=name,
                default=argparse.SUPPRESS,
                help=f"{field.description or ''} (default: {default})",
                **_field_flag(field.annotation),
            )


def _add_item_flags(g, dests: list[str]) -> None:
    for dest in dests:
        flag, metavar, _, help_text = ITEM_FLAGS[dest]
        g.add_argument(
            flag, dest=dest, action="append", metavar=metavar, help=help_text,
            default=argparse.SUPPRESS,
        )  # fmt: skip


def _add_shorthand_flags(g, noise_only: bool) -> None:
    for flag, (key, type_, spelt) in SHORTHAND_FLAGS.items():
        if key.endswith("_noise") or not noise_only:
            g.add_argument(
                flag,
                dest=f"shorthand_{key}",
                type=type_,
                metavar=spelt.rpartition("=")[2],
                help=f"shorthand of {spelt} (a modality named {key.split('_')[0]}, of that kind)",
                default=argparse.SUPPRESS,
            )


def _item(dest: str, item: str) -> tuple[list[str], Any]:
    """An item flag's ``KEY=VALUE`` -> (the path of the setting it gives, its value)."""
    flag, metavar, where, _ = ITEM_FLAGS[dest]
    key, eq, value = item.partition("=")
    keys = [k.strip() for k in key.split(".", where.count("{}") - 1)]
    as_yaml = metavar.endswith("=VALUE")
    if not eq or len(keys) != where.count("{}") or not all(keys) or not (as_yaml or value.strip()):
        raise ConfigError(f"{flag}: expected {metavar}, got {item!r}")
    if as_yaml:
        with contextlib.suppress(yaml.YAMLError):  # text that is not YAML stays text
            value = yaml.safe_load(value)
    else:
        value = value.strip()
    if dest == "modality_noise":  # checked here to name the flag (kept as written)
        try:
            parse_noise(value)
        except ValueError as err:
            raise ConfigError(f"{flag} {item}: {err}") from None
    parts = iter(keys)
    return [next(parts) if part == "{}" else part for part in where.split(".")], value


def _flag_settings(args: argparse.Namespace) -> list[tuple[list[str], Any]]:
    """(path, value) of each setting the item and shorthand flags give, in the order they
    apply: the shorthands (``--image-noise``) first, so the long forms win over them."""
    given = vars(args)
    flat = {key: given[f"shorthand_{key}"] for key, *_ in SHORTHAND_FLAGS.values()
            if f"shorthand_{key}" in given}  # fmt: skip
    out = [
        (["modalities", m, setting], value)
        for m, settings in shorthand_settings(flat).items()
        for setting, value in settings.items()
    ]
    return out + [(*_item(d, item),) for d in ITEM_FLAGS for item in given.get(d) or ()]


def _apply(values: dict[str, Any], settings: list[tuple[list[str], Any]]) -> None:
    """Each setting into ``values`` (a file's, or a run folder's), replacing what it had;
    the mappings on the way are copied (not the file's), and a malformed one (not a
    mapping) is left for its own error to name."""
    for path, value in settings:
        node = values
        for key in path[:-1]:
            child = {} if node.get(key) is None else node[key]
            if not isinstance(child, dict):
                break
            node[key] = node = dict(child)
        else:
            node[path[-1]] = value


def config_from_args(args: argparse.Namespace, overrides: dict | None = None) -> RunConfig:
    """Defaults < YAML file (or preset) < flags. With ``overrides["methods"]`` (``balgrad
    train``), the file's options for the other methods it lists are left out: they belong
    to its ``compare`` run. Any other option for a method that does not run is an error.

    Args:
        args: The parsed command line.
        overrides: Values that win over the file and the flags (``train``'s method).

    Returns:
        The validated config.

    Raises:
        ConfigError: A bad value, unknown option or unreadable file, naming it.
    """
    values: dict[str, Any] = {}
    source = "flags"
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
        source = f"{args.config} / flags"
        if "methods" in (overrides or {}) and isinstance(values.get("method_options"), dict):
            listed = values.get("methods") or default_methods()
            values["method_options"] = {
                m: o
                for m, o in values["method_options"].items()
                if m in overrides["methods"] or m not in listed
            }
    given = vars(args)
    values.update(
        {n: given[n] for n in RunConfig.model_fields if n in given and n not in ITEM_FLAGS}
    )
    _apply(values, _flag_settings(args))
    values.update(overrides or {})
    return build_config(values, source)


# -- commands -----------------------------------------------------------------------
def _run_folder(cfg: RunConfig) -> Path:
    name = cfg.name or f"{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.out) / name


def _writes_run_folder() -> bool:
    """Rank 0 under torchrun (the one process that writes the run folder), else True."""
    return int(os.environ.get("RANK", "0")) == 0


def saved_so_far(run_dir: Path) -> str:
    """What an interrupted ``compare``/``train`` leaves in its run folder, in one clause:
    the runs evaluated and the last checkpointed epoch of each unfinished one.

    Args:
        run_dir: The run folder.

    Returns:
        The clause (``nothing saved yet`` when the folder holds no finished run or
        checkpoint).
    """
    parts = []
    for rdir in sorted(run_dir.glob("*/seed*")) if run_dir.is_dir() else ():
        label = f"{rdir.parent.name} seed {rdir.name.removeprefix('seed')}"
        if (rdir / "eval.json").is_file():
            parts.append(f"{label} finished")
        elif any((rdir / f).is_file() for f in ("checkpoint.pt", "checkpoint.prev.pt")):
            epochs = rdir / "epochs.jsonl"  # one row per checkpointed epoch
            n = len(epochs.read_bytes().splitlines()) if epochs.is_file() else 0
            parts.append(f"{label} checkpoint of epoch {n}" if n else f"{label} checkpoint")
    if not parts:
        return "nothing saved yet"
    return (
        f"saved in {run_dir}: {', '.join(parts)}; rerun the same command with --resume to continue"
    )


def _run_all(cfg: RunConfig, resume: bool) -> Path:
    from balgrad.experiment import remove_if_empty

    run_dir = _run_folder(cfg)
    made_out = _writes_run_folder() and not os.path.lexists(cfg.out)
    try:
        return _run_all_in(cfg, resume, run_dir)
    except KeyboardInterrupt:
        raise Interrupted(saved_so_far(run_dir)) from None
    finally:
        if made_out:  # an --out folder this run made and left empty (it failed early)
            remove_if_empty(Path(cfg.out))


def _run_all_in(cfg: RunConfig, resume: bool, run_dir: Path) -> Path:
    from balgrad.experiment import Experiment, check_writable_folder
    from balgrad.report._build import build_report

    if _writes_run_folder():
        check_writable_folder(cfg.out, "--out")
    with Experiment(cfg, run_dir, resume=resume) as exp:
        t0 = time.perf_counter()
        for seed in cfg.seeds:
            for method in cfg.methods:
                if resume and exp.finished(method, seed):
                    logging.getLogger("balgrad").info(
                        "skip %s seed %d: already evaluated", method, seed
                    )
                    continue
                exp.train_one(method, seed)
        if exp.dist.is_main:
            build_report(run_dir, methods=cfg.methods, seeds=cfg.seeds)
            print((run_dir / "table.md").read_text())
            print(
                f"run folder: {run_dir}  ({time.perf_counter() - t0:.0f} s); what it shows: {run_dir / 'report.md'}"
            )
    return run_dir


def cmd_compare(args) -> int:
    """``balgrad compare``: train and evaluate every method of the config, then report.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).
    """
    _run_all(config_from_args(args), args.resume)
    return 0


def cmd_train(args) -> int:
    """``balgrad train --method NAME``: one method, trained, evaluated and reported.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).
    """
    _run_all(config_from_args(args, {"methods": [args.method]}), args.resume)
    return 0


#: the settings ``balgrad evaluate`` may change: the protocol's and how it runs
EVALUATE_OVERRIDES = (
    "missing_ratio",
    "eval_seed",
    "sweep",
    "device",
    "progress",
    "missing",
    "precision",
)


def evaluate_overrides(values: dict[str, Any], args: argparse.Namespace) -> None:
    """A run folder's settings (``values``, complete, its modalities resolved) with
    ``evaluate``'s flags applied: ``--noise M=LEVEL`` (or its shorthand ``--image-noise``)
    replaces the run's ``modalities.M.noise``.

    Args:
        values: The run folder's settings, changed in place.
        args: The parsed ``evaluate`` command line.
    """
    for name in EVALUATE_OVERRIDES:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    _apply(values, _flag_settings(args))


def cmd_evaluate(args) -> int:
    """``balgrad evaluate RUN_DIR``: re-score a run folder's checkpoints under the
    protocol (its own settings, or the flags' changes) and rebuild its report.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).

    Raises:
        ConfigError: The folder is not a run folder, or a flag does not apply to it.
    """
    from balgrad.experiment import Experiment, check_folder_path, check_writable_folder
    from balgrad.report._build import build_report

    run_dir = Path(args.run_dir)
    check_folder_path(run_dir, "evaluate RUN_DIR")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"evaluate: {run_dir} is not a run folder (no config.yaml)")
    check_writable_folder(run_dir, "evaluate RUN_DIR")
    values = load_run_config(cfg_path).model_dump()  # complete, or an error naming it
    evaluate_overrides(values, args)
    cfg = build_config(values, str(cfg_path))
    methods = check_methods(args.methods or cfg.methods, "evaluate --methods")
    try:
        # config.yaml stays the training record
        with Experiment(cfg, run_dir, write_config=False) as exp:
            exp.reevaluate(methods)  # writes the eval.json files only once all are scored
            build_report(run_dir, methods=methods, seeds=cfg.seeds)
    except KeyboardInterrupt:
        raise Interrupted(
            f"the trained models and eval.json files in {run_dir} are unchanged; rerun the "
            "command to finish"
        ) from None
    print((run_dir / "table.md").read_text())
    return 0


def cmd_report(args) -> int:
    """``balgrad report RUN_DIR``: rebuild a run folder's tables and figures from its
    files, without training or scoring.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).

    Raises:
        ConfigError: The folder is not a run folder.
    """
    from balgrad.experiment import check_folder_path
    from balgrad.report._build import build_report
    from balgrad.train._lock import RunLock

    check_folder_path(Path(args.run_dir), "report RUN_DIR")
    if not (Path(args.run_dir) / "config.yaml").is_file():
        raise ConfigError(f"report: {args.run_dir} is not a run folder (no config.yaml)")
    try:
        with RunLock(args.run_dir):  # the figures and tables are written into the run folder
            build_report(Path(args.run_dir))
    except KeyboardInterrupt:
        raise Interrupted(
            f"the results in {args.run_dir} are unchanged; rerun the command to redraw the report"
        ) from None
    print((Path(args.run_dir) / "table.md").read_text())
    return 0


def _print_entries(registry, describe) -> None:
    """One line per entry: name, aliases, what ``describe(entry)`` says, typed options."""
    for entry in registry.entries():
        aliases = f" (also {', '.join(entry.aliases)})" if entry.aliases else ""
        print(f"  {entry.display_name}{aliases}: {describe(entry)}")
        try:
            options = registry.entry_options(entry)
        except BalgradError as err:  # a plug-in that cannot be imported
            print(f"      (cannot list its options: {err})")
            continue
        if options:
            print("      " + ", ".join(str(o) for o in options.values()))


def _strategy_line(entry) -> str:
    meta = entry.metadata
    text = f'"{meta["label"] or entry.name}"'
    if entry.base:
        fixed = ", ".join(f"{k}={v!r}" for k, v in entry.fixed.items())
        text += f", preset of {entry.base} ({fixed})"
    if meta["description"]:
        text += f" - {meta['description']}"
    if meta["run_seed"]:
        text += " [seed: the run's seed]"
    return text + _origin(entry)


def _origin(entry) -> str:
    return "" if entry.origin == "balgrad" else f" [from the {entry.origin}]"


def _modalities_text(metadata) -> str:
    """``audio:audio visual:video`` (with a modality's default backbone: ``audio:audio=resnet18``)."""
    own = metadata["modality_backbones"]
    return " ".join(
        f"{m}:{k}" + (f"={own[m]}" if m in own else "") for m, k in metadata["modalities"].items()
    )


def cmd_list(args) -> int:
    """``balgrad list``: the registered methods, datasets, backbones (by kind) and fusions.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).
    """
    from balgrad.backbones._factory import BACKBONES
    from balgrad.data._catalog import DATASETS
    from balgrad.models._fusion import FUSION_REGISTRY
    from balgrad.strategies._registry import METHOD_SETS, STRATEGY_REGISTRY

    kinds = {"builtin": "built in", "disk": "needs --data-dir"}
    print("datasets (--dataset, options: --dataset-option KEY=VALUE; modalities as name:kind):")
    _print_entries(
        DATASETS,
        lambda e: (
            f"{kinds[e.metadata['kind']]}; {_modalities_text(e.metadata)}; "
            f"{e.metadata['description']}" + _origin(e)
        ),
    )
    print("strategies (--methods, options: --method-option METHOD.KEY=VALUE):")
    _print_entries(STRATEGY_REGISTRY, _strategy_line)
    print("method sets (--methods NAME):")
    for name, what in METHOD_SETS.items():
        print(f"  {name}: {what}")
    for kind, registry in BACKBONES.items():
        flag = (
            f"--{kind}-backbone (the modality {kind}) or "
            if f"--{kind}-backbone" in SHORTHAND_FLAGS
            else ""
        )
        print(
            f"{kind} backbones (for a modality M of kind {kind}: {flag}--backbone M=NAME, "
            "options: --backbone-option M.KEY=VALUE):"
        )
        _print_entries(
            registry,
            lambda e: (
                e.metadata["description"]
                + (" (pretrained: --finetune applies)" if e.metadata["pretrained"] else "")
                + _origin(e)
            ),
        )
    declared = {k: e.name for e in DATASETS.entries() for k in e.metadata["modalities"].values()}
    for kind, dataset in declared.items():
        if kind not in BACKBONES:
            print(
                f"{kind} backbones: none registered (needed by {dataset}; a plug-in may add them)"
            )
    print("fusions (--fusion):")
    _print_entries(FUSION_REGISTRY, lambda e: e.metadata["description"])
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in balgrad's one-line form (its exit code, 2, stays)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"balgrad: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("balgrad")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``balgrad`` parser: ``compare``, ``train``, ``evaluate``, ``report``, ``list``
    and ``docs``, each field of :class:`~balgrad.config.RunConfig` a flag.

    Returns:
        The parser.
    """
    p = _Parser(prog="balgrad", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"balgrad {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    _add_evaluate(sub)
    r = sub.add_parser("report", help="redraw the tables, figures and summary of a run folder")
    r.add_argument("run_dir")
    r.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="strategies and their options, datasets, backbones")
    ls.set_defaults(func=cmd_list)
    d = sub.add_parser("docs", help="where the built documentation is, or how to build it")
    d.set_defaults(func=cmd_docs)
    return p


def _add_run_commands(sub) -> None:
    """``compare`` and ``train``: every run option, ``--config`` and ``--resume``."""
    c = sub.add_parser("compare", help="train every method and print the paper's Table 1")
    t = sub.add_parser("train", help="train and evaluate one method")
    t.add_argument("--method", default="balgrad", help="a strategy name (see `balgrad list`)")
    for parser, func, skip in ((c, cmd_compare, ()), (t, cmd_train, ("methods",))):
        _add_config_flags(parser, skip=skip)
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the run folder --out/--name from its checkpoints",
        )
        parser.set_defaults(func=func)


def _add_evaluate(sub) -> None:
    """``evaluate``: the protocol's settings and how it runs (:data:`EVALUATE_OVERRIDES`);
    unset ones (None) keep the run folder's."""
    e = sub.add_parser("evaluate", help="re-evaluate the saved models of a run folder")
    e.add_argument("run_dir")
    e.add_argument("--methods", nargs="+", default=None)
    e.add_argument("--missing-ratio", dest="missing_ratio", type=float)
    _add_item_flags(e, ["modality_noise"])
    _add_shorthand_flags(e, noise_only=True)
    e.add_argument("--eval-seed", dest="eval_seed", type=int)
    e.add_argument("--missing", choices=["input", "embedding"])
    e.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None)
    e.add_argument("--device")
    e.add_argument(
        "--precision",
        choices=typing.get_args(RunConfig.model_fields["precision"].annotation),
        help="autocast precision of the forward passes (default: the one the run trained in)",
    )
    e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    e.set_defaults(func=cmd_evaluate)


#: the documentation's sources and built site, in a source checkout of balgrad
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
DOCS_BUILD = "sphinx-build -W --keep-going -b html docs docs/_build/html"


def cmd_docs(args) -> int:
    """Print the built site's index.html, or the commands that build it.

    Args:
        args: The parsed command line.

    Returns:
        The exit status (0).
    """
    index = DOCS_DIR / "_build" / "html" / "index.html"
    if index.is_file():
        print(index)
        return 0
    if (DOCS_DIR / "conf.py").is_file():
        root = DOCS_DIR.parent
        print(
            f"the documentation is not built yet; in {root}:\n"
            f"  .venv/bin/python -m pip install -e '.[docs]'\n"
            f"  .venv/bin/python -m {DOCS_BUILD}\n"
            f"then open {index}"
        )
        return 0
    print(
        "this install has no documentation sources (they are in a source checkout of "
        "balgrad, under docs/); build them there with:\n"
        f"  pip install -e '.[docs]' && python -m {DOCS_BUILD}"
    )
    return 0


#: the errnos of a write the file system refused: full, over a size limit or quota, read-only
#: (a file over ``ulimit -f`` is EFBIG, not a kill: Python ignores SIGXFSZ from the start)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def main(argv: list[str] | None = None) -> int:
    """The ``balgrad`` command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0; 2 for an error balgrad reports (one line on stderr, no
        traceback) or a write the file system refused; 130 for an interrupt.
    """
    # the CLI only writes figures to files: a headless backend, unless the user chose one
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = args.func(args)
    except (Interrupted, KeyboardInterrupt) as err:  # Ctrl-C: the shell's code for SIGINT
        print(f"balgrad: interrupted; {err or 'nothing saved yet'}", file=sys.stderr)
        return 130
    except BalgradError as err:
        print(f"balgrad: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a write outside balgrad.atomic (a folder, a log): still one line
        if err.errno not in _WRITE_ERRNOS:
            raise
        where = f"write {err.filename}" if err.filename else "write a file"
        print(f"balgrad: error: cannot {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    end_distributed()  # every rank got here: end the torchrun process group cleanly
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
