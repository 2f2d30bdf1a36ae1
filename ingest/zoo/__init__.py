"""The model zoo: toy models trained here and released models loaded offline.

Importing this package registers the ``zoo:`` dictionary scheme (cheap: no torch).
"""

from ingest.dictionaries import register_dictionary_scheme
from ingest.dictionaries.load import register_transcoder_set_scheme
from ingest.zoo.specs import resolve_zoo_dictionary

register_dictionary_scheme("zoo", resolve_zoo_dictionary)


def _zoo_transcoders(body: str) -> str:
    # torch-free, but not needed at start-up
    if body.partition("/")[0] == "smollm2-135m":   # SmolLM2's one set (no checkpoints)
        from ingest.zoo.smollm2_transcoders import resolve_smollm2_transcoders
        from ingest.zoo.store import zoo_root
        return resolve_smollm2_transcoders(zoo_root())
    from ingest.zoo.transcoder_build import resolve_zoo_transcoders
    return resolve_zoo_transcoders(body)


register_transcoder_set_scheme("zoo", _zoo_transcoders)
