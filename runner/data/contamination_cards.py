"""CONTAMINATION.json on disk, and its summary in every data card.

``write`` computes the document (runner/data/contamination.py, the algorithm), writes it
atomically and, when it lies inside the data folder, lists it in ``SHA256SUMS`` and rewrites
each task's contamination section in ``<data>/<task>/README.md`` -- the part between the two
markers below, replaced in place (or appended once) so that the rest of the card is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtl_contract.files import atomic_write_bytes, atomic_write_text
from mtl_contract.schema import CONTAMINATION_FILE as FILE_NAME
from runner.data.checksums import record_checksum
from runner.data.contamination import DEFAULT_N, compute, document_bytes

CARD_BEGIN, CARD_END = "<!-- contamination:begin -->", "<!-- contamination:end -->"


def overlap_count(ids: dict, key: str | None = None) -> int:
    """How many units one pair's id lists hold: ``key`` "exact" or "ngram", None either."""
    return len(ids[key]) if key else len(set(ids["exact"]) | set(ids["ngram"]))


def _card_row(doc: dict, task: str, a: str) -> str | None:
    """One training task's row of ``task``'s table, None when it overlaps nothing."""
    cells = []
    for split in ("test", "validation"):
        ids = doc["overlap"][task][split][a]
        share = 100 * overlap_count(ids) / max(1, doc["units"][task][split])
        cells += [str(overlap_count(ids, "exact")), str(overlap_count(ids, "ngram")),
                  f"{overlap_count(ids)} ({share:.1f}%)"]
    if all(c == "0" for c in cells[:2] + cells[3:5]):
        return None
    return f"| {a}{' (itself)' if a == task else ''} | " + " | ".join(cells) + " |"


def card_section(doc: dict, task: str, file_name: str = FILE_NAME) -> str:
    """The data card's contamination section for ``task`` (between the two markers)."""
    n, units = doc["n"], doc["units"][task]
    intro = (f"Units of {task}: {doc['unit_text'][task]}; test {units['test']}, validation "
             f"{units['validation']}. Below, per training task, the units that overlap its "
             f"training units. exact: the same normalised text; {n}-gram: a shared run of {n} "
             f"words; any: either. An exact match without a {n}-gram one is a unit with no "
             f"{n} words in a row (short, or cut by entity masks). Written by `python -m "
             f"runner contamination` into `{file_name}` (the unit ids and the rules), compared "
             f"with the training data of {len(doc['tasks'])} tasks: {', '.join(doc['tasks'])}. "
             f"Tasks that overlap nothing here are left out.")
    rows = [r for a in doc["tasks"] if (r := _card_row(doc, task, a)) is not None]
    header = (f"| training task | test exact | test {n}-gram | test any | validation exact "
              f"| validation {n}-gram | validation any |")
    table = [header, "|---|" + "---:|" * 6] + rows if rows else [
        "No overlap with the training data of any of these tasks."]
    dropped = (f"Training units of {task} that overlap a validation or test unit of any of "
               f"these tasks (what `decontaminate = true` drops when they are all the study's "
               f"tasks): {doc['train_units_overlapping_evaluated'][task]} of {units['train']}.")
    lines = [CARD_BEGIN, "## Overlap with training data (contamination)", "", intro, "",
             *table, "", dropped, CARD_END]
    return "\n".join(lines) + "\n"


def with_section(card: str, section: str) -> str:
    """``card`` with its contamination section replaced (or appended once)."""
    start, end = card.find(CARD_BEGIN), card.find(CARD_END)
    if start >= 0 and end > start:
        tail = card[end + len(CARD_END):]
        return card[:start] + section + tail.lstrip("\n")
    return card.rstrip("\n") + "\n\n" + section


def update_cards(doc: dict, data_dir: Path, file_name: str) -> list[Path]:
    """Rewrite the section in every ``<data_dir>/<task>/README.md`` that exists."""
    written = []
    for task in doc["tasks"]:
        card = data_dir / task / "README.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            new = with_section(text, card_section(doc, task, file_name))
            if new != text:
                atomic_write_text(card, new)
            written.append(card)
    return written


def write(data_dir: Path, tasks: Sequence[str], n: int = DEFAULT_N,
          out: Path | None = None) -> tuple[Path, dict]:
    """Compute and write the file; inside ``data_dir`` also list it in SHA256SUMS and update
    the data cards (``python -m runner prepare`` calls this after preparing)."""
    out = out if out is not None else data_dir / FILE_NAME
    doc = compute(data_dir, tasks, n)
    atomic_write_bytes(out, document_bytes(doc))
    if out.resolve().parent == data_dir.resolve():
        record_checksum(data_dir, out)
        update_cards(doc, data_dir, out.name)
    return out, doc
