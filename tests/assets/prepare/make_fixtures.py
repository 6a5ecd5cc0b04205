"""Regenerate the small fixture sources under tests/assets/prepare/source/ from the real corpora.

Run once by hand (``python tests/assets/prepare/make_fixtures.py /work/shared/data-sources``);
the output is committed, so the tests never need the real corpora. Each fixture is a slice of
the real file in the real format (TSV lines, Arrow stream with the original schema, pickle).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from runner.data.prepare.readers import read_seed_pickle

OUT = Path(__file__).resolve().parent / "source"


def tsv_head(src: Path, dst: Path, sentences: int) -> None:
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:sentences]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def arrow_rows(src: Path, dst: Path, keep) -> None:
    table = ipc.open_stream(pa.memory_map(str(src))).read_all()
    idx = [i for i, row in enumerate(table.to_pylist()) if keep(i, row)]
    part = table.take(pa.array(idx, type=pa.int64()))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(dst), "wb") as fh, ipc.new_stream(fh, part.schema) as writer:
        writer.write_table(part)


def first_with_relations(n: int):
    seen = []

    def keep(i, row):
        if len(seen) < n and row["relations"]:
            seen.append(i)
            return True
        return False
    return keep


def main(root: str) -> None:
    root = Path(root)
    for split, n in (("train", 6), ("devel", 3), ("test", 3)):
        tsv_head(root / f"biobert-ner/BC2GM/{split}.tsv", OUT / f"biobert-ner/BC2GM/{split}.tsv", n)
    for split in ("train", "validation", "test"):
        arrow_rows(root / f"bigbio/chemprot/{split}.arrow", OUT / f"bigbio/chemprot/{split}.arrow",
                   first_with_relations(2))
        arrow_rows(root / f"bigbio/biosses/{split}.arrow", OUT / f"bigbio/biosses/{split}.arrow",
                   lambda i, r: i < 4)
        pmids = {}

        def hoc_keep(i, row, pmids=pmids, cap=3 if split == "train" else 1):
            pmid = row["document_id"].split("_")[0]
            if pmid not in pmids and len(pmids) < cap:
                pmids[pmid] = True
            return pmid in pmids
        arrow_rows(root / f"bigbio/hoc/{split}.arrow", OUT / f"bigbio/hoc/{split}.arrow", hoc_keep)
    arrow_rows(root / "bigbio/ddi/train.arrow", OUT / "bigbio/ddi/train.arrow",
               first_with_relations(10))
    arrow_rows(root / "bigbio/ddi/test.arrow", OUT / "bigbio/ddi/test.arrow",
               first_with_relations(2))
    arrow_rows(root / "bigbio/gad/train.arrow", OUT / "bigbio/gad/train.arrow", lambda i, r: i < 30)
    arrow_rows(root / "bigbio/gad/test.arrow", OUT / "bigbio/gad/test.arrow", lambda i, r: i < 10)
    arrow_rows(root / "bigbio/pubmedqa/train.arrow", OUT / "bigbio/pubmedqa/train.arrow",
               lambda i, r: i < 40)
    (OUT / "seed-pickle").mkdir(parents=True, exist_ok=True)
    gad = read_seed_pickle(root / "seed-pickle/gad.pkl")
    (OUT / "seed-pickle/gad.pkl").write_bytes(pickle.dumps(
        {"train": gad["train"][:30], "test": gad["test"][:10]}, protocol=4))
    bio = read_seed_pickle(root / "seed-pickle/biosses.pkl")
    (OUT / "seed-pickle/biosses.pkl").write_bytes(pickle.dumps(
        {s: bio[s][:4] for s in ("train", "validation", "test")}, protocol=4))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data-sources")
