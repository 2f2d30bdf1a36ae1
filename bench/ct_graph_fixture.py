"""Make ``tests/fixtures/circuit_tracer_graph.json``: a Neuronpedia graph JSON file written by
circuit-tracer 0.5.0 itself (``create_graph_files``), for the import/export round-trip test.

    .venv/bin/python bench/ct_graph_fixture.py

It builds the per-layer-transcoder "bench" case of ``bench/vs_circuit_tracer.py`` (4 layers,
d_model 64, random seeded weights, the zoo's tokenizer; the 2-layer fixture case keeps no
feature after pruning), builds circuit-tracer's virtualenv (``bench/peer_venv.sh``) and runs ``bench/ct_side.py CASE OUT SLUG`` there: ``attribute`` on
the case's first prompt, pruned at 0.8 / 0.98 by circuit-tracer's own ``create_graph_files``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from vs_circuit_tracer import build_case  # noqa: E402

SLUG = "circuit-tracer-tiny"


def main() -> None:
    venv = subprocess.run(["bash", str(HERE / "peer_venv.sh")], check=True, capture_output=True, text=True,
                          env={**os.environ, "MECHGRAPH_PYTHON": sys.executable}).stdout.strip().splitlines()[-1]
    case = build_case("plt", "bench", seed=0, n_prompts=1, batch_size=256, device="cpu")
    out = HERE / "out" / "ct-graph"
    out.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([str(Path(venv) / "bin" / "python"), str(HERE / "ct_side.py"), str(case), str(out), SLUG],
                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    dst = ROOT / "tests" / "fixtures" / "circuit_tracer_graph.json"
    shutil.copyfile(made, dst)
    print(f"{dst.relative_to(ROOT)}: {dst.stat().st_size} bytes")


if __name__ == "__main__":
    main()
