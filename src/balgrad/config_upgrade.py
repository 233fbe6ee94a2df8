"""Old spellings, read at the edge: the one module that knows them.

- ``upgrade_config``: a ``config.yaml`` or user YAML with the flat image-text keys of
  balgrad 0.1 (``image_backbone``, ``text_backbone``, ``image_noise``, ``text_noise``,
  ``backbone_options``) in ``modalities:`` form. A user's file gets a DeprecationWarning
  that names the new spelling; an old run folder's own ``config.yaml`` is read silently.
- ``shorthand_settings``: the documented CLI shorthands ``--image-backbone``,
  ``--text-backbone``, ``--image-noise``, ``--text-noise`` as ``modalities`` settings.
- ``upgrade_eval``: an ``eval.json`` written without ``protocol.modalities`` (the
  image-text runs of 0.1) in the current schema.
- ``upgrade_config`` also turns MSLR's flat options of 0.1 (``method_options: {mslr:
  {image_lr_scale: a}}``) into ``lr_scales: {image: a}``.
- ``legacy_tokenizer_file``: the vocabulary file name of a run folder written before
  those files were named by the modality's kind.

Nothing here imports the rest of balgrad: every layer may read old files through it.
"""

from __future__ import annotations

import warnings
from typing import Any

#: flat key -> (modality, setting); the modality is of the kind of the same name
FLAT_KEYS = {
    "image_backbone": ("image", "backbone"),
    "text_backbone": ("text", "backbone"),
    "image_noise": ("image", "noise"),
    "text_noise": ("text", "noise"),
}
#: what balgrad 0.1 wrote for a flat key left unset: the built-in and on-disk image-text
#: datasets' registrations give the same (efficientnet-lite0, minilm, the kinds' 0.5)
OLD_DEFAULTS = {
    "image_backbone": "efficientnet-lite0",
    "text_backbone": "minilm",
    "image_noise": 0.5,
    "text_noise": 0.5,
}


def shorthand_settings(flat: dict[str, Any], skip_defaults: bool = False) -> dict[str, dict]:
    """``{modality: {setting: value, kind: modality}}`` of flat keys (``image_noise: 0.3``
    -> ``{image: {noise: 0.3, kind: image}}``; the kind makes a dataset whose modality
    ``image`` is of another kind an error, as the flat key always was).

    Args:
        flat: Flat keys (``image_backbone``, ``text_backbone``, ``image_noise``,
            ``text_noise``) and their values.
        skip_defaults: Leave out a value equal to 0.1's default (unset in a 0.1 file).

    Returns:
        The ``modalities`` settings.
    """
    out: dict[str, dict] = {}
    for key, value in flat.items():
        if skip_defaults and value == OLD_DEFAULTS[key]:
            continue  # unset in 0.1: the dataset's registration gives the same
        m, setting = FLAT_KEYS[key]
        out.setdefault(m, {"kind": m})[setting] = value
    return out


def _spelt(key: str, value: Any) -> str:
    if key == "backbone_options":
        return "backbone_options: {M: {...}} -> modalities: {M: {backbone_options: {...}}}"
    m, setting = FLAT_KEYS[key]
    return f"{key}: {value!r} -> modalities: {{{m}: {{{setting}: {value!r}}}}}"


def flat_key_hint(values: dict[str, Any]) -> str | None:
    """For Python callers, who get no upgrade: the new spelling of each flat key given.

    Args:
        values: The options given (``RunConfig(**values)``).

    Returns:
        The message, or None when ``values`` has no flat key.
    """
    keys = [k for k in (*FLAT_KEYS, "backbone_options") if k in values]
    if not keys:
        return None
    return (
        "the flat image/text keys were removed in balgrad 0.2 (a YAML file that has them "
        "is upgraded with a warning); write " + "; ".join(_spelt(k, values[k]) for k in keys)
    )


def upgrade_config(values: dict[str, Any], source: str, *, warn: bool) -> dict[str, Any]:
    """``values`` (a YAML mapping) with the flat keys moved under ``modalities``; the
    ``modalities`` section wins where both set a modality's setting, as it always did.
    ``warn``: a user's file (DeprecationWarning); else an old run folder's config.yaml.

    Args:
        values: The YAML mapping, keys with underscores.
        source: The file, for the warning.
        warn: A user's file (warn) rather than a run folder's own ``config.yaml``.

    Returns:
        ``values`` in the current spelling.
    """
    values = _upgrade_mslr_options(values, source, warn=warn)
    flat = {k: values[k] for k in FLAT_KEYS if k in values}
    options, has_options = values.get("backbone_options"), "backbone_options" in values
    if not flat and not has_options:
        return values
    values = {k: v for k, v in values.items() if k not in FLAT_KEYS and k != "backbone_options"}
    if warn:
        spelt = [_spelt(k, v) for k, v in flat.items()]
        if options:
            spelt.append(_spelt("backbone_options", options))
        warnings.warn(
            f"{source}: the flat image/text keys are deprecated; write "
            + "; ".join(spelt or ["modalities: {M: {backbone_options: {...}}}"]),
            DeprecationWarning,
            stacklevel=3,
        )
    modalities = values.get("modalities")
    if modalities is None:
        modalities = {}
    if not isinstance(modalities, dict):
        return values  # malformed: RunConfig's own error names the field
    merged = {m: dict(s) if isinstance(s, dict) else s for m, s in modalities.items()}
    for m, settings in shorthand_settings(flat, skip_defaults=True).items():
        own = merged.get(m)
        if isinstance(own, dict):
            merged[m] = {**settings, **own}
        elif own is None:
            merged[m] = settings
    if isinstance(options, dict):
        for m, opts in options.items():
            own = merged.setdefault(m, {})
            if isinstance(own, dict) and isinstance(opts, dict):
                own["backbone_options"] = {**opts, **(own.get("backbone_options") or {})}
            elif isinstance(own, dict):
                own["backbone_options"] = opts  # not a mapping: its own error names it
    elif options:
        merged["backbone_options"] = options  # reported as an unknown modality
    values["modalities"] = merged
    return values


#: MSLR's per-tower options of 0.1 -> the key of ``lr_scales``
MSLR_FLAT_SCALES = {"image_lr_scale": "image", "text_lr_scale": "text", "head_lr_scale": "head"}


def _upgrade_mslr_options(values: dict[str, Any], source: str, *, warn: bool) -> dict[str, Any]:
    """``method_options.mslr.<m>_lr_scale`` as ``method_options.mslr.lr_scales.<m>``
    (``lr_scales`` wins where both set a modality, as ``MSLR`` always let it)."""
    methods = values.get("method_options")
    mslr = methods.get("mslr") if isinstance(methods, dict) else None
    if not isinstance(mslr, dict) or not (flat := [k for k in MSLR_FLAT_SCALES if k in mslr]):
        return values
    if warn:
        warnings.warn(
            f"{source}: method_options.mslr: {', '.join(flat)} are deprecated; write "
            f"lr_scales: {{{', '.join(f'{MSLR_FLAT_SCALES[k]}: {mslr[k]!r}' for k in flat)}}}",
            DeprecationWarning,
            stacklevel=4,
        )
    given = mslr.get("lr_scales")
    scales = {MSLR_FLAT_SCALES[k]: mslr[k] for k in flat}
    if isinstance(given, dict):
        scales.update(given)
    elif given is not None:
        return values  # malformed: MSLR's own check names the option
    rest = {k: v for k, v in mslr.items() if k not in MSLR_FLAT_SCALES}
    return {**values, "method_options": {**methods, "mslr": {**rest, "lr_scales": scales}}}


#: the modalities of every record balgrad 0.1 wrote (it knew the (image, text) pair
#: only, and named neither): name -> kind
LEGACY_MODALITIES = {"image": "image", "text": "text"}


def upgrade_eval(record: dict[str, Any]) -> dict[str, Any]:
    """An eval.json payload in the current schema: ``protocol.modalities`` (name -> kind)
    and ``protocol.noise`` (name -> level); an image-text record of 0.1 (no
    ``protocol.modalities``, ``image_noise``/``text_noise`` beside them, or no
    ``protocol`` at all) is converted.

    Args:
        record: The payload as read.

    Returns:
        ``record`` itself when it is current, else a converted copy.
    """
    protocol = record.get("protocol", {})
    if not isinstance(protocol, dict) or "modalities" in protocol:
        return record
    noise = {m: protocol[f"{m}_noise"] for m in LEGACY_MODALITIES if f"{m}_noise" in protocol}
    current: dict[str, Any] = {}
    for key, value in protocol.items():  # in the place (and order) balgrad writes them now
        if key in {f"{m}_noise" for m in LEGACY_MODALITIES}:
            current.setdefault("modalities", dict(LEGACY_MODALITIES))
            current.setdefault("noise", noise)
        else:
            current[key] = value
    current.setdefault("modalities", dict(LEGACY_MODALITIES))
    return {**record, "protocol": current}


def legacy_tokenizer_file(modality: str) -> str:
    """Where a run folder written before vocabulary files were named by kind keeps
    ``modality``'s: ``tokenizer.json`` for a modality named text, else
    ``tokenizer-<m>.json``.

    Args:
        modality: The modality's name.

    Returns:
        The file name, relative to the run folder.
    """
    return "tokenizer.json" if modality == "text" else f"tokenizer-{modality}.json"
