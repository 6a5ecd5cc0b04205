"""bc5cdr_disease: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "bc5cdr_disease", "BC5CDR-disease",
    "BC5CDR disease mentions, BioBERT NER release, BIO (held-out)",
    entity_types=("disease",),
    held_out=True, hf_name="bc5disease")
