"""What a task is: one frozen declaration the prepare step, the engine and the metrics share.

A task module (``runner/data/tasks/<name>.py``) declares one :class:`TaskSpec` called ``SPEC`` and
at most one preprocessing function; the registry in ``runner/data/tasks/__init__.py`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("ner", "classification", "multilabel", "regression")
SPLITS = ("train", "validation", "test")

# The one tag set every NER task uses: BIO with the entity type collapsed (one type per corpus).
NER_LABELS = ("O", "B", "I")
NER_METRICS = ("f1", "precision", "recall")


@dataclass(frozen=True)
class Source:
    """One way to obtain a task's raw files, in the order prepare tries them.

    ``format``: "biobert-ner" (CoNLL TSV folder), "bigbio" (Arrow stream folder),
    "seed-pickle" (one pickle file) or "hf" (``datasets.load_dataset(hf_path, hf_name)``).
    ``path``: relative to ``--source`` (unused for "hf"). ``splits`` maps our split name to the
    source's file stem or split name; a split absent from the map is carved by the task's
    preprocessing function (gad / ddi validation, pubmedqa all three).
    """

    format: str
    path: str = ""
    splits: tuple[tuple[str, str], ...] = (("train", "train"), ("validation", "validation"),
                                            ("test", "test"))
    hf_path: str = ""
    hf_name: str = ""

    def split_map(self) -> dict[str, str]:
        return dict(self.splits)

# tokens per example a job cuts its texts at unless the manifest says otherwise (the
# methodology's 512, the manifest's max_length default), and the length the data card counts
# each task's tokens at; here, below both the manifest and preparation, so each reads it
METHODOLOGY_MAX_LENGTH = 512


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str                       # "ner" | "classification" | "multilabel" | "regression"
    labels: tuple[str, ...]         # ner: ("O","B","I"); classification: ids in order; ...
    text_fields: tuple[str, ...]    # columns fed to the tokenizer (2 = a text pair)
    label_field: str                # "tags" | "label" | "labels"
    # No sequence length here: a job cuts every task at the manifest's max_length (or its
    # max_length_per_task), capped by the model's own limit (runner.ml.batching).
    primary_metric: str             # the methodology's choice; first of ``metrics``
    metrics: tuple[str, ...]        # every metric evaluate() reports for this task
    held_out: bool                  # out-of-distribution evaluation only (never trained on)
    source: str                     # one-line description of the corpus and its construction
    sources: tuple[Source, ...] = ()  # where prepare reads it from, in priority order
    scored: tuple[str, ...] = ()    # classification: the classes macro/micro F1 average over
    stat_kind: str = ""             # "counts" | "classes" | "pairs" (results/README.md)
    # NER: what the corpus tags (the prepared B/I/O tags carry no type); RQ4's label Jaccard
    # compares these (runner.recipes.similarity); () = "entity"
    entity_types: tuple[str, ...] = ()
    bigbio_schema: str = ""         # the BigBIO schema its Arrow files must have (prepare)
    card_notes: tuple[str, ...] = ()  # the data card's notes: how it differs from BLURB
    blurb_counts: tuple[int, int, int] | None = None  # BLURB's train/validation/test counts
    # the length jobs cut it at before max_length_per_task existed: a job whose tasks are
    # all cut within it keeps its former id (runner.study.manifest)
    former_max_length: int = 0
    # The task's one preprocessing function: ``preprocess(raw, fmt) -> {split: [row, ...]}``
    # from the reader's rows per source split to the prepared columns; None = rows pass as read.
    # It may add a "notes" key (list of str) for the data card: what the construction dropped.
    preprocess: Callable[[dict[str, list[dict]], str], dict[str, list[dict]]] | None = field(
        default=None, compare=False, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # An official split given as ids: a JSON file {split: [id, ...]} relative to --source.
    # Where it is there, prepare passes it to ``preprocess`` as ``split_ids=``; where it is not
    # (the hf source, a folder without it) the task's own construction applies and its data
    # card says which (pubmedqa).
    split_ids: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind {self.kind!r} not in {KINDS}")
        if self.metrics[:1] != (self.primary_metric,):
            raise ValueError(f"task {self.name}: primary_metric must be the first of metrics")
        if self.stat_kind not in ("counts", "classes", "pairs"):
            raise ValueError(f"task {self.name}: stat_kind {self.stat_kind!r}")
        if self.kind == "classification" and not set(self.scored) <= set(self.labels):
            raise ValueError(f"task {self.name}: scored classes must be labels")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of a prepared split, in file order."""
        if self.kind == "ner":
            return ("id", "tokens", "tags")
        if self.kind == "regression":
            return ("id",) + self.text_fields + ("label",)
        return ("id", "document_id") + self.text_fields + (self.label_field,)

    def stat_spec(self) -> dict:
        """How ``stats`` recomputes every metric from the predictions file (results/README.md)."""
        if self.stat_kind == "classes":
            return {"kind": "classes", "labels": list(self.labels),
                    "scored": [self.labels.index(c) for c in self.scored]}
        return {"kind": self.stat_kind}


def ner_spec(name: str, folder: str, description: str, *, held_out: bool,
             entity_types: tuple[str, ...], hf_name: str = "") -> TaskSpec:
    """The NER declaration every NER task shares: only the corpus and its folder differ."""
    sources = [Source("biobert-ner", f"biobert-ner/{folder}",
                      splits=(("train", "train"), ("validation", "devel"), ("test", "test")))]
    if hf_name:
        # The hub's BLURB NER configs have the same id/tokens/type/ner_tags columns as bigbio/.
        sources.append(Source("hf", hf_path="bigbio/blurb", hf_name=hf_name))
    return TaskSpec(
        name=name, kind="ner", labels=NER_LABELS, text_fields=("tokens",), label_field="tags",
        primary_metric="f1", metrics=NER_METRICS, held_out=held_out,
        source=description, sources=tuple(sources), stat_kind="counts",
        entity_types=entity_types, former_max_length=256)
