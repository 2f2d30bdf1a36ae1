"""``needs_gguf``: skip a test, saying why, when the SmolLM2 GGUF wheel is not installed."""

import pytest

from ingest.errors import ModelUnavailableError
from ingest.zoo import smollm2


def _gguf_missing() -> str | None:
    try:
        smollm2.gguf_path()
    except ModelUnavailableError as exc:
        return str(exc)
    return None


needs_gguf = pytest.mark.skipif(_gguf_missing() is not None,
                                reason=f"the SmolLM2 GGUF wheel is not installed: {_gguf_missing()}")
