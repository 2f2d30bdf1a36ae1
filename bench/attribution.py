"""Attribution benchmark: the engine's batched backward passes against one backward per downstream node.

Part A (the same graph two ways, one invocation, same inputs). A zoo toy model with its SAEs on
every ``hook_resid_post``, a few IOI prompts, ``K`` IG steps, threshold 0:

- the engine: ``AttributionEngine.attribute`` (one frozen forward per IG step and chunk of
  downstream nodes, one batched backward for the whole chunk);
- a straightforward loop: the same prepared values and the same downstream targets (one latent
  or error node at one position of one example), but for each example and IG step one frozen
  forward, then ONE ``torch.autograd.grad`` of that target's scalar per target; the mean gradient
  is projected on the upstream nodes as the engine's ``_project`` does and contracted over
  positions (α = sum and α = max from the same backward passes; the loop's cost does not depend
  on α). The loop covers the first ``--loop-examples`` examples only (it is slow); its edges/s
  is measured on those, and its edge weights are compared with the engine's on those examples.

Edges are per-example weights (example, upstream node, downstream node) that came out
nonzero, the output metric's in-edges included. Prints edges/s of both, their ratio (the
target is >= 10x), the largest difference between the two graphs, and peak memory.

Part B (seconds per prompt at GPT-2-small size). A 12-layer, d_model 768 HookedTransformer
with random weights, random 16k-latent TopK SAEs (k = 64) on all 12 ``hook_resid_post``,
one random 64-token prompt (its counterfactual another random prompt, so every graph
position moves), ``--steps`` IG steps (1 = attribution patching). ``--layers N`` < 12 times
the edges into N downstream dictionaries only (``blocks.1`` .. ``blocks.N``; ``blocks.0``
reads nothing but the embedding and would understate the cost) plus the output, and
extrapolates linearly to 12; both figures are printed. Part B calls the engine's
``edges_into`` per downstream slot, as ``attribute`` does, and drops each slot's edges once
counted so that memory stays bounded at threshold 0.

    python bench/attribution.py --quick                 # a smoke run of both parts
    python bench/attribution.py --part a                # engine vs loop, 8 IOI prompts, K = 4
    python bench/attribution.py --part b --layers 2     # GPT-2-small-shaped, CPU: extrapolated
    python bench/attribution.py --part b --device cuda  # all 12 layers on a GPU

Part M (memory against dictionary width): the same prompt and model with 16k- and 64k-latent
TopK SAEs (same k), each width in its own process; prints the dictionaries' weights, total
peak and working memory (peak minus what is resident once the model and dictionaries are
loaded; the weights are inputs, so the target ratio <= 1.3 is on the working memory). See
``bench/_attribution_memory.py``.

    python bench/attribution.py --part m --mem-layers 2 --mem-seq 32   # CPU
    python bench/attribution.py --part m --device cuda                 # 12 layers, 64 tokens
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ingest.attribution.config import AttributionConfig, PositionAgg
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import Slot, build_slots
from ingest.tasks.encode import TaskBatch

from _attribution_loop import Dense, _n_nonzero, compare, count_edges, dense_edges, loop_reference  # bench/ is on sys.path

GPT2_BOS = 50256


# -- measuring ------------------------------------------------------------------------------

def machine(device: str) -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = f"{cpu} ({line.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores (torch uses {torch.get_num_threads()} threads), "
            f"device {device} = {dev}; torch {torch.__version__}, Python {platform.python_version()}")


def _rss() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _max_rss() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024  # Linux reports KiB, macOS bytes


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Measure:
    """Wall time and peak memory of a block. CUDA: peak allocated tensor memory. CPU: peak
    resident set size, sampled every 2 ms by a thread (``ru_maxrss`` is a process-wide
    high-water mark that cannot be reset between phases, so it is printed beside)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds = 0.0
        self.peak = 0          # bytes at the high-water mark
        self.rise = 0          # ... above the value at entry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Measure:
        _sync(self.device)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = _rss() or 0
            self.peak = self._start
            if _rss() is not None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        self._t = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss() or 0)

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        self.seconds = time.perf_counter() - self._t
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, _rss() or 0)
        self.rise = self.peak - self._start

    def memory(self) -> str:
        what = "CUDA allocated" if self.device.startswith("cuda") else "RSS"
        text = f"peak {what} {_mib(self.peak)} (+{_mib(self.rise)} during it)"
        if not self.device.startswith("cuda"):
            text += f"; process ru_maxrss so far {_mib(_max_rss())}"
        return text


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# -- Part A: the engine against one backward per downstream node ----------------------------

def part_a(args: argparse.Namespace, device: str) -> None:
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    from ingest.zoo.specs import load_model, resolve_zoo_dictionary

    model = load_model(f"zoo:{args.model}", device=device)
    dictionaries = [resolve_zoo_dictionary(f"{args.model}/blocks.{layer}.hook_resid_post", device=device)
                    for layer in range(model.cfg.n_layers)]
    slots = build_slots(model, dictionaries)
    examples = get_task(args.task).examples(args.examples, seed=0, split="test")
    batch = encode_examples(model.tokenizer, examples).to(device)
    loop_examples = list(range(min(args.loop_examples, len(batch))))
    print(f"\n== Part A: engine vs one backward per downstream node, zoo:{args.model} on {device}")
    print(f"   {model.cfg.n_layers} layers, d_model {model.cfg.d_model}; SAEs "
          + ", ".join(f"{s.hook} ({s.n_latents} latents)" for s in slots if s.dictionary is not None))
    print(f"   {len(batch)} {args.task} prompts of {batch.tokens.shape[1]} tokens, K = {args.a_steps} IG steps, "
          f"counterfactual baseline, threshold 0, chunk {args.chunk}")

    def engine_for(alpha: PositionAgg) -> AttributionEngine:
        config = AttributionConfig(steps=args.a_steps, threshold=0.0, alpha=alpha, chunk=args.chunk)
        return AttributionEngine(model, slots, config)

    runs: dict[PositionAgg, tuple[float, Measure, int, Dense, int]] = {}
    for alpha in (PositionAgg.SUM, PositionAgg.MAX):
        engine = engine_for(alpha)
        engine.attribute(batch, node_attributions=False, heads=False)  # warm-up, untimed
        times = []
        for _ in range(args.repeat):
            with Measure(device) as meas:
                graph = engine.attribute(batch, node_attributions=False, heads=False)
            times.append(meas.seconds)
        dense, repeated = dense_edges(graph, slots, alpha)
        runs[alpha] = (statistics.median(times), meas, count_edges(graph), dense, repeated)

    with Measure(device) as loop_meas:
        sums, maxes, backwards = loop_reference(engine_for(PositionAgg.SUM), batch, loop_examples)
    print(f"   loop: examples {loop_examples} of {len(batch)}: {backwards:,} backward passes (one per (example, "
          f"position, node) target and IG step, plus the metric's), {loop_meas.seconds:.2f}s "
          f"({1e3 * loop_meas.seconds / backwards:.2f} ms per backward, its forwards included); "
          f"one pass serves both α below; {loop_meas.memory()}")
    for alpha, loop in ((PositionAgg.SUM, sums), (PositionAgg.MAX, maxes)):
        seconds, meas, n_rows, dense, repeated = runs[alpha]
        n_edges = _n_nonzero(dense)
        diff, scale, n_eng_sub, n_loop = compare(dense, loop, loop_examples)
        eng_rate, loop_rate = _rate(n_edges, seconds), _rate(n_loop, loop_meas.seconds)
        merged = "positions merged in one backward slot" if alpha is PositionAgg.SUM else "positions not merged"
        print(f"-- α = {alpha.value} ({merged})")
        print(f"   engine: {n_edges:,} edges ({len(batch)} examples) in {seconds:.2f}s (median of {args.repeat}) "
              f"= {eng_rate:,.0f} edges/s; {meas.memory()}")
        if repeated:
            print(f"   engine: {n_rows:,} edge rows for {n_edges:,} edges: {repeated:,} rows repeat an (example, "
                  f"dst, src) already emitted (a downstream node's positions in different chunks are not combined); "
                  f"combined by α here before comparing")
        print(f"   loop:   {n_loop:,} edges (examples {loop_examples}) in {loop_meas.seconds:.2f}s "
              f"= {loop_rate:,.0f} edges/s")
        print(f"   ratio engine/loop: {eng_rate / loop_rate:.1f}x (target >= 10x)")
        print(f"   same graph on examples {loop_examples}: engine {n_eng_sub:,} edges, loop {n_loop:,}; "
              f"max |engine - loop| = {diff:.2e} (max |w| {scale:.3g}, relative {diff / max(scale, 1e-30):.1e})")


# -- Part B: seconds per prompt, GPT-2-small shape -----------------------------------------

def gpt2_small_shaped(device: str, *, d_sae: int, k: int, seed: int, n_layers: int = 12) -> tuple[Any, list[Slot]]:
    """Random-weight GPT-2-small-shaped model (``n_layers`` of its blocks) and random TopK SAEs on every resid_post."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from ingest.dictionaries import SAEDictionary

    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                                  n_ctx=1024, act_fn="gelu_new", normalization_type="LN", device=device, seed=seed)
    model = HookedTransformer(cfg).eval()
    torch.manual_seed(seed)
    dictionaries = []
    for layer in range(cfg.n_layers):
        hook = f"blocks.{layer}.hook_resid_post"
        sae_cfg = TopKSAEConfig(d_in=cfg.d_model, d_sae=d_sae, k=k, device=device,
                                metadata=SAEMetadata(hook_name=hook))
        dictionaries.append(SAEDictionary(TopKSAE(sae_cfg).eval()))
    return model, build_slots(model, dictionaries)


def random_prompt(seq: int, d_vocab: int, device: str, seed: int) -> TaskBatch:
    """One random prompt of ``seq`` tokens (BOS first) and a random counterfactual of the same length."""
    g = torch.Generator().manual_seed(seed)
    tokens, cf = torch.randint(0, d_vocab, (2, 1, seq), generator=g)
    tokens[:, 0] = cf[:, 0] = GPT2_BOS
    answer, cf_answer = torch.randperm(d_vocab, generator=g)[:2].view(2, 1)
    last = torch.tensor([seq - 1])
    return TaskBatch(tokens, cf, last, last.clone(), answer, cf_answer, ("random",), GPT2_BOS).to(device)


class _Timed:
    """Accumulated seconds of a method, synchronising the device around each call."""

    def __init__(self, fn: Callable[..., Any], device: str) -> None:
        self.fn, self.device, self.seconds = fn, device, 0.0

    def __call__(self, *a: Any, **kw: Any) -> Any:
        _sync(self.device)
        t = time.perf_counter()
        out = self.fn(*a, **kw)
        _sync(self.device)
        self.seconds += time.perf_counter() - t
        return out


def part_b(args: argparse.Namespace, device: str) -> None:
    n_layers = 12
    measured = list(range(1, n_layers + 1)) if args.layers >= n_layers else list(range(2, args.layers + 2))
    print(f"\n== Part B: GPT-2-small shape (12 layers, d_model 768, random weights) on {device}")
    t = time.perf_counter()
    model, slots = gpt2_small_shaped(device, d_sae=args.d_sae, k=args.k, seed=0)
    batch = random_prompt(args.seq, model.cfg.d_vocab, device, seed=0)
    print(f"   {args.d_sae:,}-latent TopK SAEs (k = {args.k}, random) on all 12 resid_post hooks, "
          f"built in {time.perf_counter() - t:.1f}s; one random {args.seq}-token prompt, counterfactual another "
          f"random prompt; K = {args.steps} IG step(s){' (attribution patching)' if args.steps == 1 else ''}, "
          f"threshold 0, chunk {args.chunk}")
    engine = AttributionEngine(model, slots, AttributionConfig(steps=args.steps, threshold=0.0, chunk=args.chunk))
    cot = engine._cotangent = _Timed(engine._cotangent, device)          # type: ignore[method-assign]
    engine.prepare(batch)  # warm-up (first forward and backward of a new model), untimed
    cot.seconds = 0.0
    S = engine.S
    per_slot: list[tuple[int, float, int, int, int]] = []
    with Measure(device) as total:
        # What attribute() does besides the per-slot work (completeness deltas, activity
        # counts, node attributions and heads are left out: they are not edges).
        t = time.perf_counter()
        prep = engine.prepare(batch)
        with torch.no_grad():
            _, y0 = engine.frozen_forward(batch.tokens, engine._path(prep, 0.0))
        n_out = sum(len(r) for r in engine.edges_into(batch, prep, S)[0].values())
        _sync(device)
        fixed = time.perf_counter() - t
        for m in measured:
            t = time.perf_counter()
            edges, targets = engine.edges_into(batch, prep, m, y0[m])
            _sync(device)
            assert targets is not None
            # counted, then dropped, so that memory stays bounded at threshold 0
            per_slot.append((m, time.perf_counter() - t, len(targets.node), targets.width,
                             sum(len(r) for r in edges.values())))
            del edges
    for m, secs, n_targets, width, n_edges in per_slot:
        print(f"   into {slots[m].hook}: {n_targets:,} (position, node) targets in {width:,} backward slots, "
              f"{n_edges:,} edges, {secs:.1f}s")
    print(f"   fixed part (prepare, baseline forward, edges into the output: {n_out:,}): {fixed:.1f}s")
    print(f"   of which cotangents (downstream Jacobian rows): {cot.seconds:.1f}s")
    slot_secs = [secs for _, secs, *_ in per_slot]
    n_edges = n_out + sum(e for *_, e in per_slot)
    if len(measured) == n_layers:
        print(f"   seconds per {args.seq}-token prompt (all 12 layers measured): {total.seconds:.1f}s "
              f"({n_edges:,} edges, {_rate(n_edges, total.seconds):,.0f} edges/s)")
    else:
        mean = sum(slot_secs) / len(slot_secs)
        print(f"   measured: {len(measured)} of 12 downstream layers + output in {total.seconds:.1f}s "
              f"({n_edges:,} edges, {_rate(n_edges, total.seconds):,.0f} edges/s)")
        print(f"   extrapolated seconds per {args.seq}-token prompt, 12 layers: fixed + 12 x {mean:.1f}s "
              f"= {fixed + n_layers * mean:.1f}s (linear in layers; blocks.0 is cheaper than the mean, "
              f"so this slightly over-states)")
    print(f"   {total.memory()}")


# -- the command ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("a", "b", "m", "both"), default="both",
                    help="a: engine vs loop; b: seconds per prompt; m: memory vs width; both: a and b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes everywhere, seconds")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own); 1 gives steadier figures on a busy machine")
    ap.add_argument("--chunk", type=int, default=AttributionConfig().chunk,
                    help="downstream nodes per batched backward (the engine's chunk)")
    a = ap.add_argument_group("Part A")
    a.add_argument("--model", default="mt-small@final", help="zoo model NAME@CKPT with SAEs on its resid_post hooks")
    a.add_argument("--task", default="ioi")
    a.add_argument("--examples", type=int, default=8)
    a.add_argument("--a-steps", type=int, default=4, help="IG steps in Part A")
    a.add_argument("--repeat", type=int, default=3, help="timed engine runs per α (the median is printed)")
    a.add_argument("--loop-examples", type=int, default=2, help="examples the per-node loop covers")
    b = ap.add_argument_group("Part B")
    b.add_argument("--layers", type=int, default=None,
                   help="downstream layers to time (default: 12 on a GPU, 2 on CPU, where one layer took "
                        "~100s on one AMD EPYC thread; < 12 is extrapolated)")
    b.add_argument("--steps", type=int, default=1, help="IG steps in Part B (1 = attribution patching)")
    b.add_argument("--seq", type=int, default=64)
    b.add_argument("--d-sae", type=int, default=16384)
    b.add_argument("--k", type=int, default=64)
    m = ap.add_argument_group("Part M")
    m.add_argument("--mem-widths", type=int, nargs="+", default=[16384, 65536], help="SAE widths compared")
    m.add_argument("--mem-layers", type=int, default=None, help="blocks of the model (default: 12 on a GPU, 2 on CPU)")
    m.add_argument("--mem-seq", type=int, default=None, help="prompt length (default: 64 on a GPU, 32 on CPU)")
    m.add_argument("--mem-threshold", type=float, default=0.0, help="the engine's threshold in Part M")
    args = ap.parse_args()
    for name in ("examples", "a_steps", "repeat", "loop_examples", "steps", "seq", "d_sae", "k", "chunk"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.layers is not None and args.layers < 1:
        ap.error("--layers must be at least 1")
    if args.k > args.d_sae:
        ap.error("--k cannot exceed --d-sae")
    device = args.device
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.layers is None:
        args.layers = 12 if device.startswith("cuda") else 2
    on_gpu = device.startswith("cuda")
    args.mem_layers = args.mem_layers or (12 if on_gpu else 2)
    args.mem_seq = args.mem_seq or (64 if on_gpu else 32)
    if args.quick:
        args.mem_widths, args.mem_layers, args.mem_seq = [2048, 8192], 1, 8
        args.examples, args.a_steps, args.loop_examples = 2, 2, 1
        args.layers, args.seq, args.d_sae, args.k = 1, 16, 2048, 16
    print(f"machine: {machine(device)}")
    if args.quick:
        print("--quick: smoke sizes (Part A 2 prompts, K = 2, loop on 1; Part B 1 layer, 16 tokens, "
              "2,048-latent SAEs, k = 16; Part M 2,048 vs 8,192 latents, 1 block, 8 tokens); "
              "these figures are not the benchmark's")
    if args.part in ("a", "both"):
        part_a(args, device)
    if args.part in ("b", "both"):
        part_b(args, device)
    if args.part == "m":
        from _attribution_memory import part_m  # bench/ is on sys.path when this runs as a script

        part_m(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
