"""bc2gm: NER, words tagged B/I/O (one entity type); entity-level strict IOB2 micro F1."""

from runner.data.tasks.spec import ner_spec

SPEC = ner_spec(
    "bc2gm", "BC2GM",
    "BC2GM gene/protein mentions (BioCreative II GM), BioBERT NER release, BIO one type",
    entity_types=("gene", "protein"),
    held_out=False, hf_name="bc2gm")
