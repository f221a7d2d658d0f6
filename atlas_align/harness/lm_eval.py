"""lm-eval integration: the ``atlas-steered`` model type and an exporter to lm-eval's ``steered`` .pt format.

``atlas-steered`` is lm-eval's ``HFLM`` with an :class:`~atlas_align.AtlasAlignment` steering hook
active during every log-likelihood call and every generation::

    python -m atlas_align.harness.lm_eval run --model atlas-steered \\
        --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct,alignment=runs/smollm2-l20,concept=noun.animal,strength=0.25 \\
        --tasks my_task --include_path tasks/

The model type registers when this module is imported (lm-eval 0.4.x discovers no third-party
entry points): in Python ``import atlas_align.harness.lm_eval`` before ``lm_eval.simple_evaluate(
model="atlas-steered", ...)``; on the command line use ``python -m atlas_align.harness.lm_eval``
in place of ``lm-eval`` (same arguments). The alignment is read from safetensors only; nothing
is unpickled.

:func:`export_lm_eval_steering` writes the same direction in lm-eval's own ``steered`` format
(``{hookpoint: {steering_vector, steering_coefficient, action, bias, head_index}}``, hookpoint
relative to ``model.base_model``). Note that ``steered`` *adds* λ·s (``action="add"``) and does not
restore the activation norm the way ``AtlasAlignment.steer`` does.

``strength`` means what it means in :func:`atlas_align.models.steering.steer`: relative, λ =
strength × the median per-token norm at the hooked layer, here measured once on
:data:`~atlas_align.models.steering.REFERENCE_PROMPTS` with the subject model (``absolute=True``:
λ = strength).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from atlas_align.errors import ConfigError

_IDS = re.compile(r"^\d+([,;+ ]\d+)*$")
_CATEGORY = re.compile(r"^(noun|verb|adj|adv)\.[A-Za-z0-9_]+$")


def resolve_concept(alignment, concept: str | int | list[int]) -> list[int] | str:
    """'12' / '12;40' → feature ids; 'noun.animal' → its validated features; other text → a label query."""
    if isinstance(concept, int):
        return [concept]
    if isinstance(concept, list):
        return [int(c) for c in concept]
    text = str(concept).strip()
    if _IDS.match(text):
        return [int(x) for x in re.split(r"[,;+ ]", text)]
    if _CATEGORY.match(text):
        from atlas_align.harness.benchmarks.base import validated_concepts

        features = validated_concepts(alignment.labels).get(text)
        if not features:
            raise ConfigError(f"No validated atlas feature is labelled {text!r}; `atlas-align atlas show` lists the labels.")
        return features
    return text


def steering_unit(alignment, model, tokenizer) -> float:
    """The unit of a relative strength for this subject: its median token norm at the alignment's hookpoint."""
    from atlas_align.models.steering import REFERENCE_PROMPTS, median_token_norm

    return median_token_norm(model, tokenizer, alignment.config.subject.hookpoint, REFERENCE_PROMPTS)


def lm_eval_steering_config(alignment, concept: str | int | list[int], strength: float, *, unit: float | None = None, absolute: bool = False) -> dict[str, dict[str, Any]]:
    """The dict lm-eval's ``steered`` model reads from a .pt file; λ = strength × unit (or strength when absolute)."""
    if not absolute and unit is None:
        raise ConfigError("A relative strength needs its unit (steering_unit(alignment, model, tokenizer)); or pass absolute=True.")
    coefficient = float(strength) if absolute else float(strength) * float(unit)
    direction = alignment.concept_direction(resolve_concept(alignment, concept))
    return {
        alignment.config.subject.hookpoint: {
            "steering_vector": (coefficient * direction).to(torch.float32).contiguous(),
            "steering_coefficient": 1.0,
            "action": "add",
            "bias": None,
            "head_index": None,
        }
    }


def export_lm_eval_steering(
    alignment_or_path, concept: str | int | list[int], strength: float, out: str | Path, *,
    absolute: bool = False, unit: float | None = None, subject: str | tuple | None = None,
) -> Path:
    """Write lm-eval's ``steered`` .pt file (``--model steered --model_args steer_path=OUT``).

    A relative ``strength`` (the default) needs the subject model to measure its unit: ``unit`` if
    given, else ``subject`` — a (model, tokenizer) pair or a name for ``load_subject`` — defaulting to
    the model id the alignment records.
    """
    from atlas_align.alignment.model import AtlasAlignment

    alignment = alignment_or_path if isinstance(alignment_or_path, AtlasAlignment) else AtlasAlignment.from_pretrained(alignment_or_path)
    out = Path(out)
    if out.suffix not in (".pt", ".pth"):
        raise ConfigError(f"lm-eval reads steering vectors from .pt or .pth files; got {out.name!r}.")
    alignment.concept_direction(resolve_concept(alignment, concept))  # a bad concept fails before any model is loaded
    if not absolute and unit is None:
        if subject is None or isinstance(subject, str):
            from atlas_align.models.loading import load_subject

            subject = load_subject(subject or alignment.config.subject.model_id)
        unit = steering_unit(alignment, subject[0], subject[1])
    config = lm_eval_steering_config(alignment, concept, strength, unit=unit, absolute=absolute)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(config, tmp)
    tmp.replace(out)
    return out


# ----------------------------------------------------------------------------------- lm-eval model

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError:  # the 'eval' extra is not installed: only the exporter above is available
    HFLM = None


if HFLM is not None and __name__ != "__main__":  # under `python -m` the real module registers it (below)

    @register_model("atlas-steered")
    class AtlasSteeredLM(HFLM):
        """HFLM steered toward an atlas concept at the alignment's hookpoint (norm-preserving).

        model_args: ``pretrained`` (name, folder, offline alias or a loaded model), ``alignment``
        (artifact folder or repo id), ``concept`` (feature ids '12;40', a category 'noun.animal' or a
        label query), ``strength`` (relative to the median token norm at the hooked layer, measured once
        on ``REFERENCE_PROMPTS``; ``absolute=true`` for λ = strength), optional ``alignment_revision``.
        """

        def __init__(self, pretrained: Any = None, alignment: str | None = None, concept: str | None = None, strength: float = 0.25, absolute: bool | str = False, alignment_revision: str | None = None, **kwargs: Any) -> None:
            from atlas_align.alignment.model import AtlasAlignment

            if alignment is None or concept is None:
                raise ConfigError("atlas-steered needs model_args alignment=FOLDER_OR_REPO and concept=C (and strength=S).")
            if isinstance(pretrained, str):
                from atlas_align.models.assets import resolve_model

                pretrained = resolve_model(pretrained)  # offline aliases such as 'smollm2'
            super().__init__(pretrained=pretrained, **kwargs)
            self.alignment = AtlasAlignment.from_pretrained(alignment, revision=alignment_revision)
            self.concept = resolve_concept(self.alignment, concept)
            self.strength = float(strength)
            self.absolute = str(absolute).strip().lower() in ("true", "1", "yes")
            self.alignment.concept_direction(self.concept)  # fail now on a bad concept, not mid-run
            # One unit for the whole run (not one per batch), so results do not depend on batching.
            self.unit = None if self.absolute else steering_unit(self.alignment, self.model, self.tokenizer)

        def _steering(self):
            return self.alignment.steer(self.model, self.concept, strength=self.strength, absolute=self.absolute, unit=self.unit)

        def _model_call(self, inps, attn_mask=None, labels=None):
            with self._steering():
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            with self._steering():
                return super()._model_generate(context, max_length, stop, **generation_kwargs)


if __name__ == "__main__":  # `python -m atlas_align.harness.lm_eval run --model atlas-steered ...`: lm-eval's CLI with our model
    import importlib

    importlib.import_module("atlas_align.harness.lm_eval")
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
