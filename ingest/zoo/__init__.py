"""The model zoo: toy models trained here and released models loaded offline.

Importing this package registers the ``zoo:`` dictionary scheme (cheap: no torch).
"""

from ingest.dictionaries import register_dictionary_scheme
from ingest.dictionaries.load import register_transcoder_set_scheme
from ingest.zoo.specs import resolve_zoo_dictionary

register_dictionary_scheme("zoo", resolve_zoo_dictionary)


def _zoo_transcoders(body: str) -> str:
    from ingest.zoo.transcoder_build import resolve_zoo_transcoders  # torch-free, but not needed at start-up
    return resolve_zoo_transcoders(body)


register_transcoder_set_scheme("zoo", _zoo_transcoders)
