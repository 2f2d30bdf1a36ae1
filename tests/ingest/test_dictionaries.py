"""The dictionary interface on every implementation, its loaders, and dictionary specs.

Tiny sizes (d_in=16, d_sae=64), fixed seeds, random non-trivial weights (biases and
thresholds randomised so that some latents fire and some do not). SAE outputs are checked
against the architectures' equations written out here, not only against sae_lens.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
import torch

from ingest.dictionaries import (
    IdentityDictionary,
    SAEDictionary,
    SVDDictionary,
    load_dictionary,
    register_dictionary_scheme,
)
from ingest.dictionaries import hub, load
from ingest.errors import DictionaryError, SpecError

D_IN, D_SAE, K = 16, 64, 4
HOOK = "blocks.0.hook_resid_post"
SAE_ARCHS = ["standard", "topk", "topk-rescaled", "jumprelu", "gated"]
ALL_KINDS = SAE_ARCHS + ["identity", "svd"]


# -- building dictionaries ----------------------------------------------------------------

def make_sae(arch: str, seed: int = 0, hook_name: str = HOOK, **cfg_extra: Any):
    """An inference sae_lens SAE of ``arch`` with random weights, biases and thresholds."""
    from sae_lens.saes import GatedSAE, GatedSAEConfig, JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    classes = {"standard": (StandardSAE, StandardSAEConfig, {}),
               "topk": (TopKSAE, TopKSAEConfig, {"k": K}),
               "topk-rescaled": (TopKSAE, TopKSAEConfig, {"k": K, "rescale_acts_by_decoder_norm": True}),
               "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
               "gated": (GatedSAE, GatedSAEConfig, {})}
    sae_cls, cfg_cls, extra = classes[arch]
    cfg = cfg_cls(d_in=D_IN, d_sae=D_SAE, **extra, **cfg_extra)
    cfg.metadata.hook_name = hook_name
    sae = sae_cls(cfg)
    randomize(sae, seed)
    return sae


def randomize(sae: Any, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scales = {"W_enc": 1 / math.sqrt(D_IN), "W_dec": 0.5, "b_dec": 0.1, "b_enc": 0.5,
              "b_gate": 0.5, "b_mag": 0.5, "r_mag": 0.1}
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "threshold":  # JumpReLU thresholds are positive
                p.copy_(torch.rand(p.shape, generator=g) * 0.8)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * scales[name])
        if "topk_threshold" in dict(sae.named_buffers()):
            sae.topk_threshold.fill_(0.3)


def make_dictionary(kind: str):
    if kind in SAE_ARCHS:
        return SAEDictionary(make_sae(kind))
    if kind == "identity":
        return IdentityDictionary(D_IN, hook_name=HOOK)
    return SVDDictionary.fit(sample_acts(), rank=8, hook_name=HOOK)


def sample_acts(n: int = 256, seed: int = 1) -> torch.Tensor:
    """Anisotropic activations with a non-zero mean: distinct principal variances."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(D_IN, D_IN, generator=g) * torch.linspace(3.0, 0.1, D_IN)[:, None]
    return torch.randn(n, D_IN, generator=g) @ mixing + torch.randn(D_IN, generator=g)


def batch(seed: int = 2, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, D_IN, generator=g).requires_grad_(requires_grad)


def reference_encode(sae: Any, arch: str, x: torch.Tensor) -> torch.Tensor:
    """The architectures' encoders, written out from their papers / sae_lens docs."""
    x_in = x - sae.b_dec  # apply_b_dec_to_input
    if arch == "gated":  # Rajamanoharan et al. 2024, eq. 6 (weight-shared magnitude path)
        gate = (x_in @ sae.W_enc + sae.b_gate) > 0
        return gate * torch.relu(x_in @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag)
    pre = x_in @ sae.W_enc + sae.b_enc
    if arch == "standard":
        return torch.relu(pre)
    if arch == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold)
    if arch == "topk-rescaled":
        pre = pre * sae.W_dec.norm(dim=-1)
    kth = pre.topk(K, dim=-1).values[..., -1:]
    return torch.where(pre >= kth, torch.relu(pre), torch.zeros_like(pre))


def reference_decode(sae: Any, arch: str, f: torch.Tensor) -> torch.Tensor:
    if arch == "topk-rescaled":
        f = f / sae.W_dec.norm(dim=-1)
    return f @ sae.W_dec + sae.b_dec


# -- the interface, on every implementation -------------------------------------------------

@pytest.mark.parametrize("kind", ALL_KINDS)
def test_encode_decode_shapes(kind: str) -> None:
    d = make_dictionary(kind)
    x = batch()
    f = d.encode(x)
    assert f.shape == (2, 3, d.d_dict)
    assert d.decode(f).shape == d.forward(x).shape == d.error(x).shape == (2, 3, D_IN)
    assert d.W_dec.shape == (d.d_dict, D_IN)
    assert d.d_in == D_IN and d.hook_name == HOOK
    info = d.describe()
    assert info["kind"] == d.kind and info["d_dict"] == d.d_dict and info["hook_name"] == HOOK
    assert d.kind == (f"sae/{kind.removesuffix('-rescaled')}" if kind in SAE_ARCHS else kind)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in info.values()), info


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decode_is_affine_with_linear_part_W_dec(kind: str) -> None:
    d = make_dictionary(kind)
    f = torch.randn(5, d.d_dict, generator=torch.Generator().manual_seed(3)).relu()
    offset = d.decode(torch.zeros(1, d.d_dict))
    torch.testing.assert_close(d.decode(f) - offset, f @ d.W_dec, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_gradients_reach_inputs_and_latents(kind: str) -> None:
    d = make_dictionary(kind)
    x = batch(requires_grad=True)
    weights = torch.randn(d.d_dict, generator=torch.Generator().manual_seed(4))
    (d.encode(x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    f = d.encode(batch()).detach().requires_grad_(True)
    d.decode(f).sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_wrong_width_is_one_clear_error(kind: str) -> None:
    d = make_dictionary(kind)
    with pytest.raises(DictionaryError, match="d_in=16"):
        d.encode(torch.randn(2, D_IN + 1))
    with pytest.raises(DictionaryError, match=f"d_dict={d.d_dict}"):
        d.decode(torch.randn(2, d.d_dict + 1))


# -- sae_lens SAEs ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", SAE_ARCHS)
def test_sae_matches_its_equations_and_sae_lens(arch: str) -> None:
    sae = make_sae(arch)
    d = SAEDictionary(sae)
    x = batch()
    with torch.no_grad():
        f = d.encode(x)
        expected = reference_encode(sae, arch, x)
        torch.testing.assert_close(f, expected, atol=1e-6, rtol=1e-6)
        active = (f != 0).float().mean()
        assert 0 < active < 1, f"weights too trivial: {active:.2f} of latents active"
        torch.testing.assert_close(d.decode(f), reference_decode(sae, arch, f), atol=1e-6, rtol=1e-6)
        assert torch.equal(f, sae.encode(x)) and torch.equal(d.decode(f), sae.decode(f))
        torch.testing.assert_close(d.error(x), x - reference_decode(sae, arch, expected), atol=1e-6, rtol=1e-6)


def test_standard_sae_input_gradient_is_the_active_encoder_columns() -> None:
    sae = make_sae("standard")
    d = SAEDictionary(sae)
    x = torch.randn(D_IN, generator=torch.Generator().manual_seed(5), requires_grad=True)
    f = d.encode(x)
    f.sum().backward()
    expected = sae.W_enc.detach()[:, f.detach() > 0].sum(dim=1)
    torch.testing.assert_close(x.grad, expected)


@pytest.mark.parametrize("arch", SAE_ARCHS)
def test_sae_save_then_from_disk_round_trips(arch: str, tmp_path) -> None:
    sae = make_sae(arch)
    sae.save_model(tmp_path / "sae")
    for d in (SAEDictionary.from_disk(tmp_path / "sae"), load_dictionary(f"path:{tmp_path / 'sae'}")):
        assert d.kind == SAEDictionary(make_sae(arch)).kind and d.hook_name == HOOK
        assert d.source == f"path:{tmp_path / 'sae'}"
        for name, p in sae.state_dict().items():
            assert torch.equal(d.sae.state_dict()[name], p), name
        assert torch.equal(d.encode(batch()), sae.encode(batch()))


def test_batchtopk_training_sae_loads_as_jumprelu_from_checkpoint_and_final_dir(tmp_path) -> None:
    # The runner's checkpoints are TrainingSAE.save_model (training config, architecture
    # "batchtopk", which has no inference class); its final output is save_inference_model.
    from sae_lens.saes import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
    randomize(sae, seed=6)
    sae.save_model(tmp_path / "checkpoint")
    sae.save_inference_model(tmp_path / "final")
    assert json.loads((tmp_path / "checkpoint" / "cfg.json").read_text())["architecture"] == "batchtopk"
    x = batch()
    x_in = x - sae.b_dec
    # batchtopk trains with rescale_acts_by_decoder_norm: latents (and the running top-k
    # threshold) are in units of hidden_pre * ||W_dec row||; inference is jumprelu at it.
    pre = (x_in @ sae.W_enc + sae.b_enc) * sae.W_dec.norm(dim=-1)
    expected = torch.relu(pre) * (pre > 0.3)
    for d in (SAEDictionary(sae), SAEDictionary.from_disk(tmp_path / "checkpoint"),
              SAEDictionary.from_disk(tmp_path / "final")):
        assert d.kind == "sae/jumprelu"
        with torch.no_grad():
            torch.testing.assert_close(d.encode(x), expected, atol=1e-6, rtol=1e-6)


def test_checkpoint_activation_scaler_is_folded_in(tmp_path) -> None:
    from sae_lens.training.activation_scaler import ActivationScaler

    sae = make_sae("standard", normalize_activations="expected_average_only_in")
    sae.save_model(tmp_path / "checkpoint")
    with pytest.raises(DictionaryError, match="expected_average_only_in"):
        SAEDictionary.from_disk(tmp_path / "checkpoint")  # no scaler beside it: refuse
    scale = 2.5
    ActivationScaler(scaling_factor=scale).save(str(tmp_path / "checkpoint" / "activation_scaler.json"))
    d = SAEDictionary.from_disk(tmp_path / "checkpoint")
    x = batch()
    with torch.no_grad():  # the SAE was trained on x * scale: its reconstruction, unscaled
        torch.testing.assert_close(d.encode(x), reference_encode(sae, "standard", x * scale))
        torch.testing.assert_close(d.forward(x), sae.forward(x * scale) / scale, atol=1e-5, rtol=1e-5)


def test_hook_z_sae_takes_flattened_heads() -> None:
    sae = make_sae("standard", hook_name="blocks.0.attn.hook_z", reshape_activations="hook_z")
    d = SAEDictionary(sae)
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(7))  # n_heads=4, d_head=4
    with torch.no_grad():
        torch.testing.assert_close(d.encode(z.flatten(-2)), reference_encode(sae, "standard", z.flatten(-2)))
    with pytest.raises(DictionaryError, match="last dimension"):
        d.encode(z)


def test_refuses_saes_that_are_not_fixed_dictionaries() -> None:
    from sae_lens.saes import Transcoder, TranscoderConfig

    with pytest.raises(DictionaryError, match="layer_norm"):
        SAEDictionary(make_sae("standard", normalize_activations="layer_norm"))
    with pytest.raises(DictionaryError, match="transcoder"):
        SAEDictionary(Transcoder(TranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_IN,
                                                 apply_b_dec_to_input=False)))
    with pytest.raises(DictionaryError, match="sae_lens SAE"):
        SAEDictionary(torch.nn.Linear(D_IN, D_SAE))


def test_to_float64_keeps_the_wrapped_sae_in_sync() -> None:
    d = SAEDictionary(make_sae("jumprelu")).to(torch.float64)
    x = batch().double()
    assert d.encode(x).dtype == torch.float64 and d.sae.cfg.dtype == "float64"
    torch.testing.assert_close(d.encode(x), reference_encode(d.sae, "jumprelu", x))


# -- identity and SVD ------------------------------------------------------------------------

def test_identity_reconstructs_exactly() -> None:
    d = IdentityDictionary(D_IN)
    x = batch()
    assert torch.equal(d.encode(x), x) and torch.equal(d.forward(x), x)
    assert torch.equal(d.error(x), torch.zeros_like(x))
    assert torch.equal(d.W_dec, torch.eye(D_IN))
    assert d.to(torch.float64).W_dec.dtype == torch.float64
    with pytest.raises(DictionaryError):
        IdentityDictionary(0)


@pytest.mark.parametrize("center", [True, False])
def test_svd_reconstructs_at_full_rank(center: bool) -> None:
    acts = sample_acts()
    d = SVDDictionary.fit(acts, center=center)
    assert d.d_dict == D_IN
    x = batch() * 3 + 1  # not from the fitting sample: a full basis reconstructs anything
    torch.testing.assert_close(d.forward(x), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.W_dec @ d.W_dec.T, torch.eye(D_IN), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.explained_variance_ratio.sum(), torch.tensor(1.0))
    if not center:
        assert torch.equal(d.mean, torch.zeros(D_IN))


def test_svd_matches_the_singular_value_decomposition() -> None:
    acts = sample_acts().double()
    d = SVDDictionary.fit(acts)
    _, s, vh = torch.linalg.svd(acts - acts.mean(0), full_matrices=False)
    torch.testing.assert_close(d.explained_variance_ratio, s**2 / (s**2).sum())
    torch.testing.assert_close((d.components * vh).sum(-1).abs(), torch.ones(D_IN, dtype=torch.float64))
    assert torch.equal(d.components, SVDDictionary.fit(acts).components)  # signs fixed


def test_svd_low_rank_error_is_the_dropped_variance() -> None:
    acts = sample_acts().double()
    d = SVDDictionary.fit(acts, rank=4)
    err = d.error(acts)
    assert err.abs().max() > 1e-3
    s = torch.linalg.svdvals(acts - acts.mean(0))
    torch.testing.assert_close((err**2).sum(), (s[4:] ** 2).sum())  # Eckart-Young
    assert d.explained_variance_ratio.sum() < 1


def test_svd_save_then_load_round_trips(tmp_path) -> None:
    d = SVDDictionary.fit(sample_acts(), rank=6, hook_name=HOOK)
    d.save(tmp_path / "basis")
    for loaded in (SVDDictionary.load(tmp_path / "basis"), load_dictionary(f"path:{tmp_path / 'basis'}")):
        assert isinstance(loaded, SVDDictionary)
        for name in ("components", "mean", "explained_variance_ratio"):
            assert torch.equal(getattr(loaded, name), getattr(d, name)), name
        assert loaded.hook_name == HOOK and loaded.centered and loaded.n_fit == 256
        assert torch.equal(loaded.encode(batch()), d.encode(batch()))


@pytest.mark.parametrize("rank", [0, D_IN + 1, 2.5])
def test_svd_rejects_bad_ranks(rank: Any) -> None:
    with pytest.raises(DictionaryError, match="rank"):
        SVDDictionary.fit(sample_acts(), rank=rank)


# -- specs and schemes -----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["", "nothing", "foo:bar", "path:", "Path:/x", "release:gpt2-small-res-jb",
                                  "release:/blocks.0.hook_resid_pre", "identity:abc", "identity:0",
                                  "identity:16/"])
def test_malformed_or_unknown_specs_are_spec_errors(spec: str) -> None:
    with pytest.raises(SpecError, match="dictionary spec|release:RELEASE/SAE_ID|identity:D_IN"):
        load_dictionary(spec)


def test_identity_spec_and_missing_path() -> None:
    d = load_dictionary("identity:16/blocks.0.mlp.hook_post")
    assert isinstance(d, IdentityDictionary) and d.d_in == 16 and d.hook_name == "blocks.0.mlp.hook_post"
    assert d.source == "identity:16/blocks.0.mlp.hook_post"
    assert load_dictionary("identity:8").hook_name is None
    with pytest.raises(DictionaryError, match="does not exist"):
        load_dictionary("path:/no/such/dir")


@pytest.fixture()
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "_resolvers", {})


def test_registered_scheme_resolves(clean_registry: None) -> None:
    def toy(body: str) -> IdentityDictionary:
        return IdentityDictionary(int(body))

    register_dictionary_scheme("toy", toy)
    register_dictionary_scheme("toy", toy)  # idempotent
    d = load_dictionary("toy:12")
    assert d.d_in == 12 and d.source == "toy:12"
    with pytest.raises(ValueError, match="already registered"):
        register_dictionary_scheme("toy", lambda body: IdentityDictionary(1))
    with pytest.raises(ValueError, match="built in"):
        register_dictionary_scheme("path", toy)
    assert load_dictionary("once:5", resolvers={"once": toy}).d_in == 5
    with pytest.raises(DictionaryError, match="not a Dictionary"):
        load_dictionary("bad:1", resolvers={"bad": lambda body: torch.nn.Identity()})
    with pytest.raises(SpecError, match="unknown dictionary scheme 'once'"):
        load_dictionary("once:5")


def test_provider_module_is_imported_on_first_use(clean_registry: None, tmp_path, monkeypatch) -> None:
    (tmp_path / "fake_zoo_provider.py").write_text(
        "from ingest.dictionaries import IdentityDictionary, register_dictionary_scheme\n"
        "register_dictionary_scheme('fakezoo', lambda body: IdentityDictionary(3, hook_name=body))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(load.SCHEME_PROVIDERS, "fakezoo", "fake_zoo_provider")
    assert load_dictionary("fakezoo:blocks.1.hook_resid_pre").hook_name == "blocks.1.hook_resid_pre"


# -- pretrained releases (offline here) ------------------------------------------------------

def test_unknown_release_and_sae_id_are_dictionary_errors() -> None:
    with pytest.raises(DictionaryError, match="no SAE release 'gpt2-small-res-jbb'.*'gpt2-small-res-jb'"):
        SAEDictionary.from_pretrained("gpt2-small-res-jbb", "blocks.0.hook_resid_pre")
    with pytest.raises(DictionaryError, match="has no SAE 'blocks.99.hook_resid_pre'"):
        load_dictionary("release:gpt2-small-res-jb/blocks.99.hook_resid_pre")


@pytest.fixture()
def empty_hf_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_release_fails_fast_in_this_offline_sandbox(empty_hf_cache) -> None:
    if hub.hub_reachable():
        pytest.skip("the Hugging Face hub is reachable here; this test checks the offline path")
    start = time.monotonic()
    with pytest.raises(DictionaryError, match=r"could not fetch SAE 'blocks.0.hook_resid_pre' of release "
                                              r"'gpt2-small-res-jb' from the Hugging Face hub \(offline\)"):
        load_dictionary("release:gpt2-small-res-jb/blocks.0.hook_resid_pre")
    assert time.monotonic() - start < 10  # huggingface_hub alone retries for ~25 s


def test_release_fails_fast_with_hf_hub_offline(empty_hf_cache, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("HF_HUB_OFFLINE must skip the probe"))
    start = time.monotonic()
    with pytest.raises(DictionaryError, match=r"\(offline\)"):
        SAEDictionary.from_pretrained("gpt2-small-res-jb", "blocks.0.hook_resid_pre")
    assert time.monotonic() - start < 10  # huggingface_hub alone retries for ~25 s


def test_release_in_the_hf_cache_loads_offline(empty_hf_cache, monkeypatch) -> None:
    # The hub "unreachable": the load runs in offline mode and must still find the cache.
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    sae = make_sae("jumprelu")
    snapshot = empty_hf_cache / "models--jbloom--GPT2-Small-SAEs-Reformatted" / "snapshots" / ("0" * 40)
    sae.save_model(snapshot / "blocks.0.hook_resid_pre")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    d = load_dictionary("release:gpt2-small-res-jb/blocks.0.hook_resid_pre")
    assert d.kind == "sae/jumprelu" and d.source == "release:gpt2-small-res-jb/blocks.0.hook_resid_pre"
    assert torch.equal(d.encode(batch()), sae.encode(batch()))


def test_hub_probe_gives_up_quickly_on_a_closed_port(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    assert hub.hub_reachable(timeout=2.0) is False
    assert time.monotonic() - start < 3
