"""ncbi_disease: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "ncbi_disease", "NCBI-disease",
    "NCBI-disease disease mentions, BioBERT NER release, BIO (held-out)",
    entity_types=("disease",),
    held_out=True, hf_name="ncbi_disease")
