"""jnlpba: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "jnlpba", "JNLPBA",
    "JNLPBA 2004 protein/DNA/RNA/cell line/cell type as one type, BioBERT NER release, BIO",
    # the five types are merged into one B/I/O entity in the BioBERT release
    entity_types=("protein", "dna", "rna", "cell_line", "cell_type"),
    held_out=False, hf_name="jnlpba")
