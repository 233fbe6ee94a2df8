"""The modalities a run folder's report is laid out for, and Table 1's rows for them.

Each eval.json names its modalities (``protocol.modalities``: name -> kind, in the order
the tables list them) and their eval-time noise (``protocol.noise``: name -> level);
files written before modalities were named are upgraded where they are read
(:func:`balgrad.config_upgrade.upgrade_eval`). With exactly (image, text), the pair of
balgrad 0.1, every row label and sentence is the two-modality report's, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from balgrad.config_upgrade import LEGACY_MODALITIES, upgrade_eval
from balgrad.data._kinds import KINDS
from balgrad.errors import BalgradError
from balgrad.names import condition_name

#: impairment kinds summarised per modality, with their row-label prefix
IMPAIRMENT_LABELS = (("missing", "Missing"), ("noisy", "Noisy"))


@dataclass(frozen=True)
class Layout:
    """``modalities``: name -> kind in table order; ``noise``: name -> eval noise level
    (where known)."""

    modalities: dict[str, str]
    noise: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The modality names in table order."""
        return list(self.modalities)

    @property
    def legacy(self) -> bool:
        """The (image, text) run of SPEC sections 1-4: labels as they always were."""
        return list(self.modalities.items()) == list(LEGACY_MODALITIES.items())

    @property
    def has_only(self) -> bool:
        """M > 2: the ``only_<m>`` conditions are part of the protocol."""
        return len(self.modalities) > 2

    def noise_label(self, m: str) -> str:
        """ "Noisy audio (SNR = 10 dB)"; the (image, text) rows keep their bare labels.

        Args:
            m: The modality's name.

        Returns:
            The row label of ``noisy_<m>``.
        """
        level = self.noise.get(m)
        kind = KINDS.get(self.modalities[m])
        if self.legacy or level is None or kind is None:
            return f"Noisy {m}"
        return f"Noisy {m} ({kind.describe_noise(level)})"

    def rows(self) -> list[tuple[str, str]]:
        """Table 1's rows.

        Returns:
            ``(key, label)`` rows; keys as :func:`balgrad.evaluate._protocol.summarize`'s.
        """
        out = [("full", "Full")]
        for kind, label in IMPAIRMENT_LABELS:
            for m in self.names:
                out.append(
                    (
                        condition_name(kind, m),
                        self.noise_label(m) if kind == "noisy" else f"{label} {m}",
                    )
                )
            out += [(f"{kind}_avg", f"{label} Avg"), (f"{kind}_gap", f"{label} ΔGap")]
        if self.has_only:
            out += [(condition_name("only", m), f"Only {m}") for m in self.names]
        return out

    def paired_rows(self) -> list[tuple[str, str]]:
        """Rows of the paired comparison against the reference method.

        Returns:
            ``(key, label)`` rows: Full, each impairment's Avg and ΔGap, and (M > 2) each
            ``only_<m>``.
        """
        out = [("full", "Full")]
        for kind, label in IMPAIRMENT_LABELS:
            out += [(f"{kind}_avg", f"{label} Avg"), (f"{kind}_gap", f"{label} ΔGap")]
        if self.has_only:
            out += [(condition_name("only", m), f"Only {m}") for m in self.names]
        return out

    def ablation_rows(self) -> list[tuple[str, str]]:
        """Table 2's rows (missing modality).

        Returns:
            ``(key, label)`` rows: Full, Missing <m> for each m, Avg, ΔGap.
        """
        return [
            ("full", "Full"),
            *((condition_name("missing", m), f"Missing {m}") for m in self.names),
            ("missing_avg", "Avg"),
            ("missing_gap", "ΔGap"),
        ]


def protocol_layout(result: dict) -> Layout:
    """The :class:`Layout` of one eval.json payload.

    Args:
        result: The payload (one of balgrad 0.1 is upgraded first,
            :func:`balgrad.config_upgrade.upgrade_eval`).

    Returns:
        Its modalities and their eval-time noise levels.
    """
    protocol = upgrade_eval(result).get("protocol") or {}
    modalities = protocol.get("modalities") or {}
    noise = protocol.get("noise") or {}
    return Layout(dict(modalities), {m: v for m, v in noise.items() if m in modalities})


def run_layout(results: list[dict]) -> Layout:
    """The one :class:`Layout` of a run folder's eval.json payloads.

    Args:
        results: The payloads (empty: a layout of no modalities).

    Returns:
        The first payload's layout.

    Raises:
        BalgradError: Naming the first run whose modalities differ from the others'.
    """
    if not results:
        return Layout({})
    first = protocol_layout(results[0])
    for r in results[1:]:
        other = protocol_layout(r)
        if list(other.modalities.items()) != list(first.modalities.items()):
            raise BalgradError(
                f"report: {r['method']}/seed{r['seed']}/eval.json has modalities "
                f"{other.modalities}, but {results[0]['method']}/seed{results[0]['seed']} has "
                f"{first.modalities}; report runs of one dataset (or re-evaluate them)"
            )
    return first
