"""Candidate entity pairs within a sentence of a BigBIO KB document, marked as BLURB marks them.

Shared by the two relation-extraction tasks (chemprot, ddi); not a task itself.

Sentence splitter (simple, documented, deterministic): a passage is cut
  * at every newline (ChemProt's title ends with one), and
  * after ``.``, ``!`` or ``?`` (plus any closing quote or bracket) followed by whitespace and
    then an upper-case letter, a digit or an opening bracket/quote;
a cut that would fall inside an entity mention is dropped, so no mention spans two sentences.
DDI adds list-item cuts (``LIST_CUT``): before a `` - `` bullet and after a ``;`` that are
followed by a letter. DrugBank drug labels enumerate dozens of drugs that way ("may interact
with: - Acetaminophen ... or - Amiodarone ..."); kept as one sentence, one such list of 118
mentions alone gives 6,903 pairs, most of them truncated past the encoder's max_length.
Abbreviations followed by a capital ("vs. Tamoxifen") are therefore split too; BLURB used the
corpus' own sentence boundaries, which is why its counts differ slightly (see the data cards).

Every ordered candidate pair of mentions within one sentence becomes one example; the two
mentions are replaced by their mask strings (``@CHEMICAL$`` / ``@GENE$``, ``@DRUG$``) and the
example's label is the annotated relation of that pair, or ``false``.  When the two mentions
overlap in characters (ChemProt: a chemical inside a gene name) they cannot be masked apart:
their union is replaced by one ``overlap_mask`` (``@CHEM-GENE$``, as in BLUE/BLURB's ChemProt
files); such pairs are counted on the data card.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from runner.data.tasks.spec import TaskSpec

SENTENCE_CUT = r"[.!?][\"')\]]*\s+(?=[A-Z0-9(\[\"'])|\n+"
LIST_CUT = r"\s-\s(?=[A-Za-z])|;\s+(?=[A-Za-z])"
_CUT = re.compile(SENTENCE_CUT)


@dataclass(frozen=True)
class Mention:
    id: str
    type: str
    start: int   # character offset in the document, inclusive
    end: int     # exclusive; a discontinuous mention is masked from its first to its last char


def split_sentences(text: str, base: int, mentions: list[Mention],
                    cut: re.Pattern = _CUT) -> list[tuple[int, int]]:
    """(start, end) document offsets of the sentences of one passage starting at ``base``."""
    inside = set()
    for m in mentions:
        inside.update(range(m.start + 1, m.end))
    bounds, start = [], 0
    for match in cut.finditer(text):
        end = match.end()
        if base + end in inside or base + match.start() + 1 in inside:
            continue
        if text[start:end].strip():
            bounds.append((base + start, base + end))
        start = end
    if text[start:].strip():
        bounds.append((base + start, base + len(text)))
    return bounds


def mentions_of(doc: dict) -> list[Mention]:
    out = []
    for e in doc["entities"]:
        offsets = e["offsets"]
        out.append(Mention(str(e["id"]), str(e["type"]), min(o[0] for o in offsets),
                           max(o[1] for o in offsets)))
    return sorted(out, key=lambda m: (m.start, m.end, m.id))


def document_text(doc: dict) -> str:
    """The document as one string with passages at their offsets (BigBIO KB)."""
    size = max(o[1] for p in doc["passages"] for o in p["offsets"])
    chars = [" "] * size
    for p in doc["passages"]:
        for piece, (start, end) in zip(p["text"], p["offsets"]):
            chars[start:end] = list(piece[: end - start].ljust(end - start))
    return "".join(chars)


def masked(text: str, s0: int, first: tuple[Mention, str], second: tuple[Mention, str]) -> str:
    """``text`` (a sentence starting at document offset s0) with both mentions masked."""
    for m, mask in sorted((first, second), key=lambda x: -x[0].start):
        text = text[: m.start - s0] + mask + text[m.end - s0:]
    return text.strip()


def candidate_pairs(docs: list[dict], *, first_types: frozenset[str],
                    second_types: frozenset[str], masks: tuple[str, str],
                    relation_label: Callable[[str, str], str | None],
                    unordered: bool, overlap_mask: str,
                    list_cuts: bool = False) -> tuple[list[dict], dict[str, int]]:
    """One example per candidate pair in each sentence of each document, in document order.

    ``relation_label(arg1_id, arg2_id)`` gives the label of an annotated pair or None (=false).
    ``unordered``: a pair is each 2-subset of mentions (DDI, both masked the same); otherwise
    each (first-type, second-type) combination (ChemProt: chemical, gene).
    ``list_cuts``: also cut sentences at list items (``LIST_CUT``; DDI).
    Returns the rows and counts of what was left out, for the data card.
    """
    cut = re.compile(SENTENCE_CUT + "|" + LIST_CUT) if list_cuts else _CUT
    rows: list[dict] = []
    skipped = {"overlapping_pairs_masked_together": 0, "relations_not_within_a_sentence": 0}
    for doc in docs:
        text = document_text(doc)
        mentions = mentions_of(doc)
        sentences: list[tuple[int, int]] = []
        for p in doc["passages"]:
            for piece, (start, _end) in zip(p["text"], p["offsets"]):
                sentences.extend(split_sentences(piece, start, mentions, cut))
        paired = set()
        for si, (s0, s1) in enumerate(sentences):
            inside = [m for m in mentions if m.start >= s0 and m.end <= s1]
            if unordered:
                pairs = [(a, b) for i, a in enumerate(inside) for b in inside[i + 1:]
                         if a.type in first_types and b.type in first_types]
            else:
                pairs = [(a, b) for a in inside if a.type in first_types
                         for b in inside if b.type in second_types]
            for a, b in pairs:
                sentence = text[s0:s1]
                if a.start < b.end and b.start < a.end:
                    skipped["overlapping_pairs_masked_together"] += 1
                    union = Mention("", "", min(a.start, b.start), max(a.end, b.end))
                    marked = (sentence[: union.start - s0] + overlap_mask
                              + sentence[union.end - s0:]).strip()
                else:
                    marked = masked(sentence, s0, (a, masks[0]), (b, masks[1]))
                paired.add((a.id, b.id))
                rows.append({
                    "id": f"{doc['document_id']}.s{si}.{a.id}.{b.id}",
                    "document_id": str(doc["document_id"]),
                    "text": marked,
                    "label": relation_label(a.id, b.id) or "false",
                })
        for r in doc["relations"]:
            if (r["arg1_id"], r["arg2_id"]) not in paired and \
                    (r["arg2_id"], r["arg1_id"]) not in paired:
                skipped["relations_not_within_a_sentence"] += 1
    return rows, skipped


def carve_by_document(rows: list[dict], salt: str, fraction: float) -> tuple[list, list]:
    """Split rows by document: the ``round(fraction * n_documents)`` documents with the
    smallest sha256(salt + document_id) go to the second list. Deterministic, order-free."""
    docs = sorted({r["document_id"] for r in rows})
    ranked = sorted(docs, key=lambda d: hashlib.sha256((salt + d).encode()).hexdigest())
    carved = set(ranked[: round(fraction * len(docs))])
    return ([r for r in rows if r["document_id"] not in carved],
            [r for r in rows if r["document_id"] in carved])


def hash_order(keys: list[str], salt: str) -> list[int]:
    """Indices of ``keys`` sorted by sha256(salt + key): a fixed, documented shuffle."""
    return sorted(range(len(keys)),
                  key=lambda i: (hashlib.sha256((salt + keys[i]).encode()).hexdigest(), i))


def relation_task(*, name: str, labels: tuple[str, ...], preprocess: Callable,
                  **declared) -> TaskSpec:
    """The TaskSpec of a BigBIO-KB relation task (ChemProt, DDI): one masked candidate pair
    of a sentence per example, the first label ("false", no relation) unscored, macro F1 over
    the others as the primary metric; ``declared`` holds what differs (source, notes, counts)."""
    return TaskSpec(
        name=name, kind="classification", labels=labels, text_fields=("text",),
        label_field="label", primary_metric="macro_f1",
        metrics=("macro_f1", "micro_f1", "accuracy") + tuple(f"f1_{c}" for c in labels[1:]),
        held_out=False, scored=labels[1:], stat_kind="classes", preprocess=preprocess,
        bigbio_schema="kb", **declared)
