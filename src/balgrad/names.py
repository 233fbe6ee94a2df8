"""The names balgrad builds from modality names, and the one rule for modality names.

Statistics (``metrics.jsonl``, ``epochs.jsonl``), evaluation conditions and Table 1's rows
(``eval.json``, ``results.json``), parameter groups and the integrations' batch keys are
flat keys, each family in one namespace: ``loss_audio`` is the statistic ``loss`` of the
modality ``audio`` and ``loss_task`` the global task loss, so a modality named ``task``
would silently make its own loss the task loss. Every such key is built here, from a
declared :class:`Schema` (:func:`stat_name`, :func:`condition_name`), and a dataset's or
a model's modality names are checked once, where they are declared, by
:func:`check_modality_names`: each must be a plain ASCII identifier, and no key a
declared schema builds from one (``loss_<m>``, ``missing_<m>``) may equal a global key
of its namespace (``loss_task``, ``missing_avg``) or a key built from another modality
(``lr_factor_audio`` is both MSLR's ``lr_factor`` of ``audio`` and its ``lr`` of
``factor_audio``).

The schemas: :data:`PROTOCOL`, :data:`PARAMETER_GROUPS`, :data:`BATCH`, and each
strategy's statistics, which a strategy class declares (``Strategy.statistics``, made by
:func:`statistics`, which adds it here when the class is defined: ``import balgrad``
imports the built-in strategies, so theirs are in place before any dataset or model is
registered). A run's pre-flight checks the names again against the statistics of the
methods it will train, plug-ins included.

Why ASCII only: a name that Python accepts as an identifier may still be two names at
once (``"ﬁ"`` and ``"fi"`` are the same attribute after NFKC normalisation but two
dictionary keys), and the names travel into flags, file columns and figure labels; the
rule is ``[A-Za-z_][A-Za-z0-9_]*``, stated once, here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from balgrad.errors import ConfigError

#: the rule for a modality name, written once (the conditions' parser uses it too)
MODALITY_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
_MODALITY = re.compile(MODALITY_PATTERN + r"\Z")
#: the evaluation conditions' actions: ``missing_<m>``, ``noisy_<m>``, ``only_<m>``
ACTIONS = ("missing", "noisy", "only")
_CONDITION = re.compile(rf"({'|'.join(ACTIONS)})_({MODALITY_PATTERN})\Z")
#: the placeholder of a modality in a template
M = "{m}"


def stat_name(statistic: str, modality: str | None = None) -> str:
    """The key of a statistic: ``statistic`` itself for a global one, else
    ``<statistic>_<modality>`` (``stat_name("loss", "audio") == "loss_audio"``).

    Args:
        statistic: The statistic.
        modality: The modality, or None for a global one.

    Returns:
        The key.
    """
    return statistic if modality is None else f"{statistic}_{modality}"


def condition_name(action: str, modality: str) -> str:
    """``missing_<m>``, ``noisy_<m>`` or ``only_<m>``.

    Args:
        action: ``"missing"``, ``"noisy"`` or ``"only"``.
        modality: The modality.

    Returns:
        The condition's key.

    Raises:
        ConfigError: An unknown action.
    """
    if action not in ACTIONS:
        raise ConfigError(f"condition: unknown action {action!r}; expected one of {ACTIONS}")
    return f"{action}_{modality}"


def parse_condition(name: str) -> tuple[str, str] | None:
    """``(action, modality)`` of a condition key built by :func:`condition_name`, or None.

    Args:
        name: A key.

    Returns:
        (action, modality), or None.
    """
    match = _CONDITION.match(name)
    return None if match is None else (match.group(1), match.group(2))


#: the namespaces keys live in: a key clashes only with keys of its own namespace
STATISTICS, EVALUATION = "statistics", "evaluation"
GROUPS, BATCH_KEYS = "parameter groups", "batch keys"


@dataclass(frozen=True)
class Schema:
    """The keys one part of balgrad writes into ``namespace``: ``global_`` as they are,
    and one key per modality for each template of ``per_modality`` (``"loss_{m}"``).
    The statistics (``metrics.jsonl``, and ``epochs.jsonl``'s rows) are one namespace,
    the evaluation's conditions and summary rows (``eval.json``, ``results.json``)
    another; a model's parameter groups and the integrations' batch keys two more."""

    owner: str
    global_: tuple[str, ...] = ()
    per_modality: tuple[str, ...] = ()
    namespace: str = STATISTICS

    def __post_init__(self) -> None:
        bad = [t for t in self.per_modality if t.count(M) != 1]
        if bad:
            raise ConfigError(f"{self.owner}: templates {bad} must hold {M} exactly once")

    def names(self, modalities: Iterable[str]) -> list[str]:
        """Every key for these modalities: the global ones, then each template's.

        Args:
            modalities: The modality names.

        Returns:
            The keys.
        """
        mods = tuple(modalities)
        return [*self.global_, *(t.replace(M, m) for t in self.per_modality for m in mods)]

    def key(self, statistic: str, modality: str | None = None) -> str:
        """The key of a statistic this schema declares: ``statistic`` for a global one,
        ``<statistic>_<modality>`` for a per-modality one (:func:`stat_name`). The one
        helper a writer and a reader of the key both go through: ConfigError for a
        statistic the schema does not declare, so a renamed statistic fails where it is
        read instead of reading nothing.

        Args:
            statistic: A declared statistic.
            modality: The modality, for a per-modality one.

        Returns:
            The key.

        Raises:
            ConfigError: The schema does not declare it.
        """
        if modality is None:
            if statistic in self.global_:
                return statistic
        elif stat_name(statistic, M) in self.per_modality:
            return stat_name(statistic, modality)
        kind = "global" if modality is None else "per-modality"
        declared = self.global_ if modality is None else self.per_modality
        raise ConfigError(
            f"{self.owner}: declares no {kind} statistic {statistic!r} (declared: {list(declared)})"
        )


def statistics(owner: str, global_: Iterable[str] = (), per_modality: Iterable[str] = ()) -> Schema:
    """A strategy's declared statistics: global names and per-modality statistics
    (``"loss"`` stands for ``loss_<m>``), added to the schemas the names are checked
    against.

    Args:
        owner: The strategy's label.
        global_: Global statistic names.
        per_modality: Per-modality statistic names.

    Returns:
        The declared :class:`Schema`.
    """
    schema = Schema(
        owner,
        tuple(global_),
        tuple(stat_name(s, M) for s in per_modality),
    )
    return declare(schema)


#: the evaluation protocol: its conditions, and the rows Table 1 derives from them
#: (:func:`balgrad.evaluate._protocol.summarize`)
PROTOCOL = Schema(
    "the evaluation protocol",
    global_=("full", *(f"{a}_{s}" for a in ("missing", "noisy") for s in ("avg", "gap"))),
    per_modality=(
        *(condition_name(a, M) for a in ACTIONS),
        *(condition_name(a, M) + "_negative_transfer" for a in ACTIONS),
    ),
    namespace=EVALUATION,
)
#: a model's parameter groups: one per modality, and these
PARAMETER_GROUPS = Schema("a model's parameter groups", ("head", "unimodal_heads"), (M,), GROUPS)

#: the label keys of a batch dict given to the Lightning and Hugging Face integrations
LABEL_KEYS = ("labels", "label", "target")
#: such a batch dict: one key per modality, its optional ``drop_<m>`` mask, a label key,
#: or the nested form's ``inputs`` (a modality ``labels`` would be read as the labels)
BATCH = Schema(
    "the integrations' batch dict", (*LABEL_KEYS, "inputs"), (M, f"drop_{M}"), BATCH_KEYS
)

_SCHEMAS: dict[str, Schema] = {s.owner: s for s in (PROTOCOL, PARAMETER_GROUPS, BATCH)}


def declare(schema: Schema) -> Schema:
    """Add ``schema`` to those every modality name is checked against (a later one of
    the same owner replaces it).

    Args:
        schema: The schema.

    Returns:
        ``schema``.
    """
    _SCHEMAS[schema.owner] = schema
    _clashes.cache_clear()
    return schema


def modality_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a modality name (None: it can).

    Args:
        name: A candidate name.

    Returns:
        The reason, or None.
    """
    if not isinstance(name, str):
        return f"{name!r} is not a string"
    if not _MODALITY.match(name):
        return (
            f"{name!r} is not a valid modality name: ASCII letters, digits and underscores, not "
            "starting with a digit"
        )
    return None


def _sources(schema: Schema, modalities: tuple[str, ...]):
    """(key, what builds it) for every key of ``schema``."""
    for g in schema.global_:
        yield g, (g, None)
    for t in schema.per_modality:
        for m in modalities:
            yield t.replace(M, m), (t, m)


@functools.lru_cache(maxsize=256)
def _clashes(modalities: tuple[str, ...], extra: tuple[Schema, ...]) -> tuple[str, ...]:
    # (namespace, key) -> {what builds it: the owners that declare it}
    built: dict[tuple[str, str], dict[tuple[str, str | None], list[str]]] = {}
    for schema in (*_SCHEMAS.values(), *extra):
        for key, source in _sources(schema, modalities):
            owners = built.setdefault((schema.namespace, key), {}).setdefault(source, [])
            if schema.owner not in owners:
                owners.append(schema.owner)
    out = []
    for (namespace, key), sources in built.items():
        if len(sources) < 2:
            continue
        parts = [
            (f"the global name of {', '.join(owners)}" if m is None else f"{t} of modality {m!r}")
            for (t, m), owners in sources.items()
        ]
        out.append(f"{namespace} name {key!r} would be both " + " and ".join(parts))
    return tuple(out)


def name_clashes(modalities: Iterable[str], extra: Iterable[Schema] = ()) -> list[str]:
    """One line per key that two different things would build for these modalities,
    under every declared schema and ``extra``.

    Args:
        modalities: The names.
        extra: More schemas.

    Returns:
        The clashes, one line each.
    """
    return list(_clashes(tuple(modalities), tuple(extra)))


def check_modality_names(
    modalities: Iterable[str], where: str, extra: Iterable[Schema] = ()
) -> tuple[str, ...]:
    """The modality names as a tuple, or ConfigError naming ``where``, the name and the
    rule: at least two, distinct, each an ASCII identifier (:func:`modality_name_problem`),
    and no key built from them clashing with another (:func:`name_clashes`).

    Args:
        modalities: The names.
        where: Where they come from, for the message.
        extra: Schemas to check against besides the declared ones.

    Returns:
        The names.

    Raises:
        ConfigError: A rule is broken.
    """
    names = tuple(modalities)
    if len(names) < 2:
        raise ConfigError(f"{where}: need at least two modalities, got {list(names)}")
    for name in names:
        if problem := modality_name_problem(name):
            raise ConfigError(f"{where}: {problem}")
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{where}: modalities {dupes} given more than once")
    if clashes := name_clashes(names, extra):
        raise ConfigError(
            f"{where}: the modality names {list(names)} clash with names balgrad builds: "
            f"{clashes[0]}{f' (and {len(clashes) - 1} more)' if len(clashes) > 1 else ''}; "
            f"rename the modality (reserved on their own: {', '.join(reserved_names())})"
        )
    return names


def reserved_names() -> list[str]:
    """The modality names that clash on their own with a global key of a declared
    schema (``task``, for ``loss_task``; ``head``; ``avg``, for ``missing_avg``).

    Returns:
        The names, sorted.
    """
    out: set[str] = set()
    for namespace in {s.namespace for s in _SCHEMAS.values()}:
        every = [s for s in _SCHEMAS.values() if s.namespace == namespace]
        globals_ = {g for s in every for g in s.global_}
        for t in {t for s in every for t in s.per_modality}:
            pre, suf = t.split(M)
            for g in globals_:
                if len(g) > len(pre) + len(suf) and g.startswith(pre) and g.endswith(suf):
                    rest = g[len(pre) : len(g) - len(suf)]
                    if _MODALITY.match(rest):
                        out.add(rest)
    return sorted(out)
