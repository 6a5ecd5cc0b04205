"""chemprot: chemical–gene relation extraction (BioCreative VI ChemProt), BLURB's construction.

Candidate (chemical, gene) pairs within a sentence of each BigBIO KB abstract, the pair masked
as ``@CHEMICAL$`` / ``@GENE$`` (see runner/data/tasks/relations.py). Five scored classes, as in
BLURB: CPR:3 Upregulator, CPR:4 Downregulator, CPR:5 Agonist, CPR:6 Antagonist, CPR:9 Substrate;
every other candidate pair (no relation, or CPR:1/2/7/8/10 / Undefined) is ``false``.
"""

from runner.data.tasks.relations import candidate_pairs, relation_task
from runner.data.tasks.spec import Source

# BigBIO's ChemProt relation group names -> the CPR class BLURB scores.
SCORED_GROUPS = {"Upregulator": "CPR:3", "Downregulator": "CPR:4", "Agonist": "CPR:5",
                 "Antagonist": "CPR:6", "Substrate": "CPR:9"}
LABELS = ("false", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    """BigBIO KB abstracts per split -> one masked candidate pair per row (+ "notes" for the
    data card: what the construction dropped)."""

    out, notes = {}, []
    for split, docs in raw.items():
        lost = overlap = 0
        # Entity ids are per document in BigBIO ChemProt ("1", "2", ...): look up per document.
        rows = []
        for doc in docs:
            table = {(a, b): lab for r in doc["relations"] if r["type"] in SCORED_GROUPS
                     for a, b, lab in [(r["arg1_id"], r["arg2_id"], SCORED_GROUPS[r["type"]])]}
            got, skipped = candidate_pairs(
                [doc], first_types=frozenset({"CHEMICAL"}),
                second_types=frozenset({"GENE-Y", "GENE-N"}),
                masks=("@CHEMICAL$", "@GENE$"),
                relation_label=lambda a, b, t=table: t.get((a, b)), unordered=False,
                overlap_mask="@CHEM-GENE$")
            rows.extend(got)
            found = {(r["id"].split(".")[2], r["id"].split(".")[3]) for r in got}
            lost += sum(1 for pair in table if pair not in found)
            overlap += skipped["overlapping_pairs_masked_together"]
        out[split] = rows
        notes.append(f"{split}: {overlap} pairs masked together as @CHEM-GENE$; {lost} scored "
                     "relations lost because their mentions fall in different sentences")
    out["notes"] = notes
    return out


SPEC = relation_task(
    name="chemprot", labels=LABELS, preprocess=to_rows,
    source="ChemProt (BigBIO KB): chemical-gene pairs per sentence, masked @CHEMICAL$/@GENE$",
    sources=(Source("bigbio", "bigbio/chemprot"),
             Source("hf", hf_path="bigbio/chemprot", hf_name="chemprot_bigbio_kb")),
    card_notes=(
        ("Difference from BLURB: BLURB used the corpus' own sentence boundaries; here a "
         'simple regex splitter (runner/data/tasks/relations.py) cuts the BigBIO '
         'abstracts, so a few sentences are split or joined differently and the '
         'candidate-pair counts differ by under 1.2%. Positive relations whose two '
         'mentions fall in different sentences of this splitter are lost (counted below).'),
        ('Pairs whose chemical lies inside the gene mention are masked together as '
         "@CHEM-GENE$ (as in BLURB's files); CPR:1/2/7/8/10 and 'Undefined' pairs are "
         "'false'."),
    ),
    blurb_counts=(18035, 11268, 15745),
    former_max_length=256)
