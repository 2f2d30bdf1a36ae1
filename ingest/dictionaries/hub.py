"""Access to sae_lens' pretrained SAE releases on the Hugging Face hub, failing fast offline.

sae_lens resolves a release name through the registry it ships (``pretrained_saes.yaml``,
local) and downloads through ``huggingface_hub``, which retries an unreachable hub with
backoff for about 25 seconds before giving up. Here the release and SAE id are checked
against the registry first (that works offline), then the hub's host is probed with one
short TCP connect; if it does not answer, the download runs in huggingface_hub's offline
mode, so that an SAE already in the local cache (``HF_HOME``) still loads and one that is
not fails at once. Setting ``HF_HUB_OFFLINE=1`` skips the probe.

:func:`preflight` does all of that without importing sae_lens (whose import alone takes
seconds to a minute on a busy machine): it reads only the release's block of the registry
file and looks for the release's repository in the local Hugging Face cache, so that
``mechgraph ingest`` can refuse an unreachable ``release:`` spec in well under a second,
before it loads any model.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ingest.errors import DictionaryError

T = TypeVar("T")

#: Seconds the reachability probe waits for a TCP connection to the hub (or its proxy).
PROBE_TIMEOUT_S = 3.0


def check_release(release: str, sae_id: str) -> str:
    """The Hugging Face repo of ``release``; :class:`DictionaryError` unless the registry knows
    ``release`` and its ``sae_id``.

    A ``release`` with a ``/`` that the registry does not know is taken as a Hugging Face
    repo id, which sae_lens loads directly; its SAE id is not checked.
    """
    entry = _registry_entry(release)
    if entry is None:
        if "/" in release:
            return release
        raise DictionaryError(f"sae_lens knows no SAE release {release!r} (see its pretrained_saes.yaml)"
                              + _did_you_mean(release, _release_names()))
    ids = [str(sae.get("id")) for sae in entry.get("saes") or () if isinstance(sae, dict)]
    if sae_id not in ids:
        raise DictionaryError(f"SAE release {release!r} has no SAE {sae_id!r} (it has {len(ids)}, "
                              "listed in sae_lens' pretrained_saes.yaml)" + _did_you_mean(sae_id, ids))
    return str(entry.get("repo_id") or release)


def preflight(release: str, sae_id: str) -> None:
    """Fail at once, in one sentence, if SAE ``sae_id`` of ``release`` cannot be loaded here:
    the registry does not know it, or the hub is unreachable (or ``HF_HUB_OFFLINE``) and its
    repository is not in the local cache. Imports neither sae_lens nor torch."""
    repo = check_release(release, sae_id)
    from huggingface_hub import constants

    if constants.is_offline_mode() or not hub_reachable():
        cached = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
        if not cached.is_dir() or not any(cached.iterdir()):
            raise DictionaryError(
                f"could not fetch SAE {sae_id!r} of release {release!r} from the Hugging Face hub (offline, and "
                f"{repo} is not in the cache under HF_HOME); fetch it once where the hub is reachable, "
                "or save it with sae_lens and load that directory with path:DIR")


def _registry_file() -> Path:
    spec = importlib.util.find_spec("sae_lens")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DictionaryError("release: specs need sae_lens, which is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"


@cache
def _registry_text() -> str:
    try:
        return _registry_file().read_text(encoding="utf-8")
    except OSError as e:
        raise DictionaryError(f"cannot read sae_lens' SAE registry: {e}") from e


@cache
def _release_names() -> tuple[str, ...]:
    return tuple(re.findall(r"^([^\s#:][^:\n]*):\s*$", _registry_text(), flags=re.MULTILINE))


def _registry_entry(release: str) -> dict[str, Any] | None:
    """The registry's entry for ``release``, parsing only its block of the 1.5 MB file (a
    full parse takes seconds)."""
    import yaml

    text = _registry_text()
    start = re.search(rf"^{re.escape(release)}:\s*$", text, flags=re.MULTILINE)
    if start is None:
        return None
    end = re.search(r"^[^\s#]", text[start.end():], flags=re.MULTILINE)
    block = text[start.start():start.end() + (end.start() if end else len(text))]
    loaded = yaml.load(block, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    entry = loaded.get(release) if isinstance(loaded, dict) else None
    return entry if isinstance(entry, dict) else None


def fetch(release: str, sae_id: str, load: Callable[[], T]) -> T:
    """Run ``load`` (a call into sae_lens' hub loaders) with the offline policy above.

    Download failures become one :class:`DictionaryError` sentence, the cause chained.
    """
    import httpx
    from huggingface_hub import constants

    offline = constants.is_offline_mode() or not hub_reachable()
    try:
        if offline:
            with _offline_mode():
                return load()
        return load()
    except (OSError, httpx.HTTPError) as e:
        first_line = str(e).splitlines()[0][:160] if str(e) else ""
        why = "offline" if offline else f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise DictionaryError(
            f"could not fetch SAE {sae_id!r} of release {release!r} from the Hugging Face hub ({why}); "
            "fetch it once where the hub is reachable (it is then cached under HF_HOME), "
            "or save it with sae_lens and load that directory with path:DIR") from e


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host (or to the proxy for it) opens in ``timeout`` s.

    The connect runs in a daemon thread so that a hanging DNS lookup, which socket timeouts
    do not cover, cannot hold the caller longer than ``timeout``.
    """
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    if not url.hostname:
        return False
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 8080
    answered: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, name="mechgraph-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


@contextmanager
def _offline_mode() -> Iterator[None]:
    # huggingface_hub reads this module global at request time (constants.is_offline_mode),
    # so flipping it for the duration of one load is its own offline mode: cached files
    # resolve, requests raise OfflineModeIsEnabled at once instead of retrying.
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _did_you_mean(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
