"""``--dicts-all``: one dictionary kind on one or more sites of every layer, in one option.

``SOURCE[@SITES]``. SITES is a comma list of ``resid_pre``, ``resid_mid``, ``resid_post``,
``attn_out``, ``mlp_out`` (``hook_`` may be written; default ``resid_post``), expanded to
``blocks.<L>.hook_<site>`` for every layer L. SOURCE is

* ``identity``: the raw basis (neurons of the stream) at each hook, ``identity:<d_model>/<hook>``;
* ``svd``: a full-rank, centered PCA basis per hook (:class:`SVDDictionary`), fitted on the
  activations of the ingest's tasks' *train* prompts (clean, BOS and padding positions left out)
  and saved under ``<cache>/dictionaries/svd-<hash>/<hook>``, where the hash names the model,
  tasks, seed and sample size; the run records the saved ``path:`` specs, so ``evaluate``
  and every later command load exactly the bases the graph was measured with;
* any dictionary spec with a ``{hook}`` (full hook name) or ``{layer}`` placeholder, e.g.
  ``path:saes/{hook}`` (a directory per hook, as ``mechgraph dict train`` writes them) or
  ``zoo:mt-small@final/{hook}``.

``--dicts-all identity@resid_post`` is the residual graph in neurons; ``--dicts-all
svd@attn_out,mlp_out`` the module graph in PCA bases; repeat the option to combine sources on
different sites.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.errors import SpecError

#: Sites in forward order within a layer.
SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")


@dataclass(frozen=True)
class DictsAll:
    source: str
    sites: tuple[str, ...]

    def hooks(self, n_layers: int) -> list[str]:
        return [f"blocks.{L}.hook_{s}" for L in range(n_layers) for s in self.sites]


def parse_dicts_all(text: str) -> DictsAll:
    """Parse ``SOURCE[@SITES]`` (module docstring); a :class:`SpecError` names the forms."""
    text = (text or "").strip()
    head, at, tail = text.rpartition("@")
    names = [s.strip().removeprefix("hook_") for s in tail.split(",")] if at else []
    if at and names and all(n in SITES for n in names):
        source, sites = head, tuple(dict.fromkeys(names))
    elif at and head in ("identity", "svd"):
        raise SpecError(f"--dicts-all {text!r}: sites are a comma list of {', '.join(SITES)}")
    else:
        source, sites = text, ("resid_post",)
    if source not in ("identity", "svd") and "{hook}" not in source and "{layer}" not in source:
        raise SpecError(f"--dicts-all {text!r}: the source is identity, svd, or a dictionary spec with a {{hook}} or "
                        "{layer} placeholder (e.g. path:saes/{hook}@attn_out,mlp_out)")
    return DictsAll(source, sites)


def expand_dicts_all(texts: Sequence[str], model: Any, *, fit_tokens: Callable[[], tuple[Any, Any]],
                     fit_key: dict[str, Any]) -> list[str]:
    """Concrete dictionary specs of every ``--dicts-all`` option, in forward order.

    ``fit_tokens() -> (tokens [batch, pos], valid [batch, pos] bool)`` gives the prompts an SVD
    basis is fitted on (called only when one is needed); ``fit_key`` names them in the cache."""
    n_layers = int(model.cfg.n_layers)
    order = {f"blocks.{L}.hook_{s}": (L, i) for L in range(n_layers) for i, s in enumerate(SITES)}
    specs: dict[str, str] = {}
    for text in texts:
        parsed = parse_dicts_all(text)
        hooks = parsed.hooks(n_layers)
        if parsed.source == "identity":
            new = {h: f"identity:{model.cfg.d_model}/{h}" for h in hooks}
        elif parsed.source == "svd":
            new = _svd_specs(model, hooks, fit_tokens, fit_key)
        else:
            new = {h: parsed.source.replace("{hook}", h).replace("{layer}", str(order[h][0])) for h in hooks}
        taken = sorted(set(new) & set(specs))
        if taken:
            raise SpecError(f"--dicts-all {text!r} puts a second dictionary on {taken[0]}")
        specs.update(new)
    return [specs[h] for h in sorted(specs, key=order.__getitem__)]


def _svd_specs(model: Any, hooks: list[str], fit_tokens: Callable[[], tuple[Any, Any]],
               fit_key: dict[str, Any]) -> dict[str, str]:
    import torch

    from graphdb.settings import cache_dir
    from ingest.dictionaries.svd import SVDDictionary

    digest = hashlib.sha256(json.dumps(fit_key, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_dir() / "dictionaries" / f"svd-{digest}"
    missing = [h for h in hooks if not (root / h / "svd.json").is_file()]
    if missing:
        tokens, valid = fit_tokens()
        cache: dict[str, Any] = {}
        with torch.no_grad():
            model.run_with_hooks(tokens, fwd_hooks=[(h, lambda x, hook: cache.__setitem__(hook.name, x))
                                                    for h in missing])
        for h in missing:
            tmp = root / (h + ".tmp")
            SVDDictionary.fit(cache[h][valid].float(), hook_name=h).save(tmp)
            tmp.replace(root / h)
    return {h: f"path:{root / h}" for h in hooks}
