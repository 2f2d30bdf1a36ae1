"""The model zoo: toy models trained here and released models loaded offline.

Importing this package registers the ``zoo:`` dictionary scheme (cheap: no torch).
"""

from ingest.dictionaries import register_dictionary_scheme
from ingest.zoo.specs import resolve_zoo_dictionary

register_dictionary_scheme("zoo", resolve_zoo_dictionary)
