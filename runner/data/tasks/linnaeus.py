"""linnaeus: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "linnaeus", "linnaeus",
    "LINNAEUS species mentions, BioBERT NER release, BIO (held-out)",
    entity_types=("species",),
    held_out=True, hf_name="")
