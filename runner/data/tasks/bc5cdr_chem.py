"""bc5cdr_chem: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "bc5cdr_chem", "BC5CDR-chem",
    "BC5CDR chemical mentions, BioBERT NER release, BIO (held-out)",
    entity_types=("chemical",),
    held_out=True, hf_name="bc5chem")
