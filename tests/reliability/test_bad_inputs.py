"""Bad input to every command: one clear error, a non-zero exit, and nothing written.

Each case runs ``mechgraph`` in-process (typer's CliRunner, stderr apart from stdout) against
the session's real Neo4j server (``NEO4J_URI`` etc. from ``neo4j_settings``), which holds the
sample graph written once for this module. Two outcomes are allowed, and each case says which:

* ``ERROR``: a user error the command itself finds (a ``MechgraphError``): exit code 1 and
  exactly one stderr line, ``mechgraph: error: <sentence>``;
* ``USAGE``: a malformed option value that typer/click refuses while parsing, or that a
  command's config rejects as an invalid option value (``typer.BadParameter``): exit code 2,
  typer's usage block (``Usage: ...`` and one ``Error`` box).

Either way: no ``Traceback`` anywhere, nothing on stdout for ``ERROR``, the expected words in
the message, and the store exactly as before: node and relationship counts and a checksum of
every label, type and property (one Cypher query returns them; Python hashes the sorted rows).

Models: a 2-layer random toy checkpoint (``path:DIR``, n_ctx 24) with identity dictionaries,
and a copy of it with a NaN weight; a fake zoo directory with one manifest; no real zoo.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from graphdb.connection import connect
from graphdb.sample import SampleSpec, write_sample
from graphdb.writer import GraphWriter

ERROR, USAGE = "error", "usage"
D = 16  # d_model of the toy model
HOOK0 = "blocks.0.hook_resid_post"

INJECTIONS = [
    "x' OR 1=1 //",
    "}) MATCH (n) DETACH DELETE n //",
    "`x` DETACH DELETE n",
    "$param",
    "x\" OR \"1\"=\"1",
    "ünïcødé ✓ 名前",
    "a" * 5000,
]
INJECTION_IDS = ["quote", "detach-delete", "backticks", "dollar-param", "double-quote", "unicode", "long"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    kind: str
    expect: str  # a regex the (un-boxed) error message must match
    env: tuple[tuple[str, str | None], ...] = ()
    slow: bool = False


def case(id: str, argv: str | list[str], kind: str, expect: str, *, env: dict[str, str | None] | None = None,
         slow: bool = False) -> Case:
    args = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return Case(id, args, kind, expect, tuple((env or {}).items()), slow)


NO_URI = {"NEO4J_URI": None}
ING = "ingest -m {model} -d identity:16/" + HOOK0 + " -n 2 --steps 1"


def _ingest(extra: str | list[str], *tasks: str) -> list[str]:
    base = ING.split() + [a for t in (tasks or ("ioi",)) for a in ("-t", t)]
    return base + (extra.split() if isinstance(extra, str) else extra)


CASES: list[Case] = [
    # --- the root: data directory ----------------------------------------------------------
    case("root-data-dir-is-a-file-db-start", "--data-dir /etc/passwd db start", ERROR, "not a directory", env=NO_URI),
    case("root-data-dir-is-a-file-db-status", "--data-dir /etc/passwd db status", ERROR, "not a directory", env=NO_URI),
    case("root-data-dir-under-a-file", "--data-dir /etc/passwd/sub db status", ERROR, "inside /etc/passwd", env=NO_URI),
    case("root-data-dir-file-report", "--data-dir /etc/passwd report", ERROR, "not a directory", env=NO_URI),
    case("root-data-dir-file-init", "--data-dir /etc/passwd db init", ERROR, "not a directory", env=NO_URI),
    case("root-home-env-is-a-file", "db status", ERROR, "not a directory",
         env={"NEO4J_URI": None, "MECHGRAPH_HOME": "/etc/passwd"}),
    case("root-unknown-command", "nosuch", USAGE, "No such command"),
    case("root-unknown-option", "--nosuch db status", USAGE, "No such option"),
    # --- db ----------------------------------------------------------------------------------
    case("db-unknown-subcommand", "db nosuch", USAGE, "No such command"),
    case("db-sample-seed-not-int", "db sample --seed abc", USAGE, "valid integer"),
    case("db-sample-seed-huge", "db sample --seed 99999999999999999999999", ERROR, "64-bit"),
    case("db-sample-batch-size-zero", "db sample --batch-size 0", USAGE, "batch-size"),
    case("db-start-port-high", "--data-dir {tmp}/never db start --port 70000", USAGE, "65535", env=NO_URI),
    case("db-start-port-negative", "--data-dir {tmp}/never db start --port -1", USAGE, "greater than or equal to 1", env=NO_URI),
    case("db-start-timeout-nan", "--data-dir {tmp}/never db start --timeout nan", ERROR, "finite", env=NO_URI),
    case("db-start-timeout-zero", "--data-dir {tmp}/never db start --timeout 0", USAGE, "timeout", env=NO_URI),
    # --- query: names -------------------------------------------------------------------------
    *[case(f"query-run-name-{i}", ["query", "run", name], ERROR, "no query named")
      for i, name in enumerate(["nosuch", "../../etc/passwd", "/etc/passwd", "hubs.cypher", "",
                                "queries/library/hubs", "hubs/../hubs"])],
    *[case(f"query-show-name-{i}", ["query", "show", name], ERROR, "no query named")
      for i, name in enumerate(["../../etc/passwd", "/etc/passwd", "~/x", "nosuch"])],
    *[case(f"query-run-name-injection-{n}", ["query", "run", s], ERROR, "no query named")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    case("query-run-no-name", "query run", USAGE, "Missing argument"),
    # --- query: parameters ------------------------------------------------------------------
    *[case(f"query-param-{n}", ["query", "run", "task_subgraph", "-p", "model=sample-tiny", "-p", "checkpoint=final",
                                "-p", "task=ioi", "-p", p], ERROR, e)
      for n, p, e in [
          ("limit-overflow", "limit=99999999999999999999999", "64-bit integer"),
          ("limit-underflow", "limit=-99999999999999999999999", "64-bit integer"),
          ("limit-2-63", f"limit={2**63}", "64-bit integer"),
          ("limit-not-int", "limit=abc", "must be int"),
          ("limit-float", "limit=1.5", "must be int"),
          ("limit-empty", "limit=", "must be int"),
          ("min-weight-nan", "min_abs_weight=nan", "finite"),
          ("min-weight-NaN", "min_abs_weight=NaN", "finite"),
          ("min-weight-inf", "min_abs_weight=inf", "finite"),
          ("min-weight-minus-inf", "min_abs_weight=-inf", "finite"),
          ("min-weight-1e999", "min_abs_weight=1e999", "finite"),
          ("min-weight-text", "min_abs_weight=heavy", "must be float"),
          ("given-twice", "model=other", "given twice"),
          ("unknown-name", "nosuch=1", "has no parameter nosuch"),
          ("no-equals", "limit", "NAME=VALUE"),
          ("no-name", "=5", "NAME=VALUE"),
      ]],
    *[case(f"query-param-int-injection-{n}", ["query", "run", "task_subgraph", "-p", "model=m", "-p", "checkpoint=c",
                                              "-p", "task=t", "-p", f"limit={s}"], ERROR, "must be int")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    *[case(f"query-param-float-injection-{n}", ["query", "run", "task_subgraph", "-p", "model=m", "-p", "checkpoint=c",
                                                "-p", "task=t", "-p", f"min_abs_weight={s}"], ERROR, "must be float")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    case("query-param-name-injection", ["query", "run", "hubs", "-p", "model}) DETACH DELETE n //=x"], ERROR,
         "has no parameter"),
    case("query-missing-required", "query run task_subgraph -p model=x", ERROR, "needs --param"),
    case("query-bad-format", "query run hubs -p model=x -p checkpoint=y -p task=z --format xml", USAGE, "xml"),
    case("query-range", "query run neighbourhood -p key=x -p task=ioi -p hops=9", ERROR, "hops must be in 1..3"),
    # --- ingest: specs ------------------------------------------------------------------------
    *[case(f"ingest-model-{n}", ["ingest", "-m", m, "-t", "ioi"], ERROR, e)
      for n, m, e in [("unknown", "gpt2", "unknown model spec"), ("empty", "", "empty"),
                      ("hf-missing", "hf:", "missing"), ("scheme", "s3:x", "scheme"),
                      ("path-missing", "path:/nonexistent/ckpt", "nonexistent|not|does not exist"),
                      ("path-file", "path:/etc/passwd", "no zoo SAEs to pick"),
                      ("zoo-not-built", "zoo:nosuch", "not built"),
                      ("zoo-name-too-long", "zoo:" + "a" * 5000, "not built|model spec"),
                      ("path-too-long", "path:/" + "a" * 5000, "no zoo SAEs|not a mechgraph"),
                      ("zoo-bad-ckpt", "zoo:micro@99", "no checkpoint at step 99")]],
    *[case(f"ingest-model-injection-{n}", ["ingest", "-m", s, "-t", "ioi"], ERROR, "model spec|scheme|empty")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    *[case(f"ingest-task-injection-{n}", _ingest([], s), ERROR, "unknown task|task spec|parameters|task name")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    *[case(f"ingest-dict-injection-{n}", ["ingest", "-m", "{model}", "-t", "ioi", "-d", s], ERROR,
           "dictionary spec|dictionary scheme")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    *[case(f"ingest-task-{n}", _ingest([], t), ERROR, e)
      for n, t, e in [
          ("unknown", "nosuch", "unknown task 'nosuch'"),
          ("variant-nosuch", "bias_in_bios:variant=nosuch", "variant must be biased, anti or balanced"),
          ("param-unknown", "ioi:nosuch=1", "bad parameters for task 'ioi'"),
          ("param-malformed", "ioi:x", "key=value"),
          ("param-bad-value", "induction:min_len=100", "could not generate an example"),
          ("param-bad-type", "bias_in_bios:gender_bias=abc", "could not generate an example"),
          ("py-not-a-task", "py:os:getcwd", "does not have a task's signature"),
          ("py-wrong-returns", "py:os:getenv", "could not generate|not an Example"),
          ("py-no-module", "py:no_such_module_xyz:f", "cannot import task module"),
          ("py-no-function", "py:os:no_such_function", "has no function"),
          ("py-malformed", "py:os", "py:MODULE:FUNCTION"),
          ("jsonl-missing", "jsonl:{tmp}/missing.jsonl", "does not exist"),
          ("jsonl-name-too-long", "jsonl:/" + "a" * 5000, "does not exist"),
          ("jsonl-directory", "jsonl:{tmp}", "does not exist"),
          ("jsonl-meta-string", "jsonl:{files}/meta_string.jsonl", "meta must be a JSON object"),
          ("jsonl-meta-list", "jsonl:{files}/meta_list.jsonl", "meta must be a JSON object"),
          ("jsonl-not-json", "jsonl:{files}/not_json.jsonl", "expected a JSON object"),
          ("jsonl-missing-field", "jsonl:{files}/missing_field.jsonl", "expected a JSON object"),
          ("jsonl-row-is-list", "jsonl:{files}/row_list.jsonl", "expected a JSON object"),
          ("jsonl-clean-number", "jsonl:{files}/clean_number.jsonl", "must be a non-empty string"),
          ("jsonl-same-answers", "jsonl:{files}/same_answers.jsonl", "two different tokens"),
          ("jsonl-empty", "jsonl:{files}/empty.jsonl", "has no examples"),
          ("jsonl-not-utf8", "jsonl:{files}/latin1.jsonl", "cannot read task file"),
          ("jsonl-misaligned", "jsonl:{files}/misaligned.jsonl", "must align position by position"),
          ("jsonl-multi-token", "jsonl:{files}/multi_token.jsonl", "not a single known token"),
          ("jsonl-out-of-vocabulary", "jsonl:{files}/oov.jsonl", "outside this tokenizer's vocabulary"),
          ("jsonl-longer-than-context", "jsonl:{files}/too_long.jsonl", "longer than the model's context of 24"),
      ]],
    case("ingest-task-twice", _ingest([], "ioi", "ioi"), USAGE, "named twice"),
    case("ingest-no-task", "ingest -m {model}", USAGE, "Missing option"),
    case("ingest-no-model", "ingest -t ioi", USAGE, "Missing option"),
    # --- ingest: dictionaries ------------------------------------------------------------------
    *[case(f"ingest-dict-{n}", ["ingest", "-m", "{model}", "-t", "ioi", "-n", "2", "-d", d], ERROR, e)
      for n, d, e in [
          ("wrong-width", f"identity:{D + 1}/{HOOK0}", "width|d_in|17"),
          ("unknown-hook", f"identity:{D}/blocks.0.hook_nowhere", "hook"),
          ("layer-out-of-range", f"identity:{D}/blocks.9.hook_resid_post", "hook"),
          ("identity-not-number", "identity:abc", "identity:D_IN"),
          ("identity-zero", "identity:0", "identity:D_IN"),
          ("identity-unicode-digit", "identity:²", "identity:D_IN"),
          ("identity-huge", "identity:99999999999999999999", "larger than any model"),
          ("no-scheme", "nothing", "cannot parse dictionary spec"),
          ("empty", "", "cannot parse dictionary spec"),
          ("unknown-scheme", "foo:bar", "unknown dictionary scheme"),
          ("path-missing", "path:/nonexistent/sae", "does not exist"),
          ("path-too-long", "path:/" + "a" * 5000, "does not exist"),
          ("path-file", "path:/etc/passwd", "does not exist"),
          ("release-no-id", "release:gpt2-small-res-jb", "release:RELEASE/SAE_ID"),
          ("release-unknown", "release:no-such-release-xyz/blocks.0", "knows no SAE release"),
          ("release-unknown-id", "release:gpt2-small-res-jb/blocks.99.hook_resid_pre", "has no SAE"),
          ("release-offline", "release:gpt2-small-res-jb/blocks.0.hook_resid_pre", r"could not fetch SAE .*offline"),
      ]],
    # --- ingest: numbers and choices -----------------------------------------------------------
    *[case(f"ingest-option-{n}", _ingest(o), k, e)
      for n, o, k, e in [
          ("examples-zero", "-n 0", USAGE, "examples must be at least 1"),
          ("examples-negative", "-n -3", USAGE, "examples must be at least 1"),
          ("examples-not-int", "-n many", USAGE, "valid integer"),
          ("examples-huge", "-n 1000000000", ERROR, "cannot provide 1,000,000,000 test examples"),
          ("examples-overflow", "-n 99999999999999999999999", ERROR, "64-bit"),
          ("batch-size-zero", "--batch-size 0", USAGE, "batch_size must be at least 1"),
          ("steps-zero", "--steps 0", USAGE, "steps"),
          ("steps-negative", "--steps -1", USAGE, "steps"),
          ("threshold-negative", "--threshold -1", USAGE, "threshold"),
          ("threshold-nan", "--threshold nan", ERROR, "--threshold must be a finite number"),
          ("threshold-inf", "--threshold inf", ERROR, "--threshold must be a finite number"),
          ("example-threshold-nan", "--example-threshold nan", ERROR, "finite"),
          ("example-threshold-negative", "--example-threshold -1", USAGE, "example_threshold"),
          ("top-k-negative", "--top-k -1", USAGE, "top_k"),
          ("alpha", "--alpha median", USAGE, "alpha"),
          ("beta", "--beta median", USAGE, "beta"),
          ("baseline", "--baseline random", USAGE, "baseline"),
          ("graph", "--graph everything", USAGE, "graph must be one of"),
          ("split", "--split validation", USAGE, "split must be train, test or all"),
          ("seed-overflow", "--seed 99999999999999999999999", ERROR, "64-bit"),
          ("device-cuda", "--device cuda", ERROR, "no CUDA GPU|CUDA device"),
          ("device-cuda-7", "--device cuda:7", ERROR, "no CUDA GPU|CUDA device"),
          ("device-unknown", "--device gpu0", ERROR, "unknown device 'gpu0'"),
          ("device-meta", "--device meta", ERROR, "cannot run a model"),
          ("format", "--format xml", USAGE, "xml"),
      ]],
    case("ingest-jsonl-more-examples-than-rows", _ingest("-n 50", "jsonl:{files}/colors.jsonl"), ERROR,
         r"cannot provide 50 test examples: its file has \d+ distinct test rows of 60"),
    case("ingest-nan-activations", ["ingest", "-m", "{nan_model}", "-t", "ioi", "-n", "2", "--steps", "1",
                                    "-d", f"identity:{D}/{HOOK0}", "-d", f"identity:{D}/blocks.1.hook_resid_post"],
         ERROR, "non-finite activations"),
    # --- evaluate -----------------------------------------------------------------------------
    *[case(f"evaluate-{n}", "evaluate -t ioi " + a, k, e)
      for n, a, k, e in [
          ("no-graph", "", USAGE, "exactly one of --run RUN or --model SPEC"),
          ("run-and-model", "--run r --model m", USAGE, "exactly one of"),
          ("run-unknown", "--run ingest-000000000000", ERROR, "ingest-000000000000"),
          ("run-not-ingest", "--run {run}", ERROR, "{run}"),
          ("model-unknown", "--model gpt2", ERROR, "unknown model spec"),
          ("sweep-zero", "--run r --sweep 0", USAGE, "sweep must be at least 1"),
          ("sweep-negative", "--run r --sweep -4", USAGE, "sweep must be at least 1"),
          ("sweep-huge", "--run r --sweep 1000", USAGE, "sweep is at most 100"),
          ("examples-zero", "--run r -n 0", USAGE, "at least 1"),
          ("top-n-zero", "--run r --top-n 0", USAGE, "top_n must be at least 1"),
          ("top-n-negative", "--run r --top-n -5", USAGE, "top_n must be at least 1"),
          ("min-weight-negative", "--run r --min-abs-weight -1", USAGE, "min_abs_weight must be >= 0"),
          ("min-weight-nan", "--run r --min-abs-weight nan", ERROR, "finite"),
          ("granularity", "--run r --granularity layer", USAGE, "granularity must be one of"),
          ("ablation", "--run r --ablation half", USAGE, "ablations are edge and/or node"),
          ("baseline", "--run r --baseline random", USAGE, "baseline must be mean, zero or counterfactual"),
          ("community-and-roi", "--run r --community c --roi r", USAGE, "one of --community or --roi"),
          ("touching-alone", "--run r --touching", USAGE, "touching restricts"),
          ("param-without-query", "--run r -p run=x", USAGE, "for a --query"),
          ("query-unknown", "--run r --query nosuch", ERROR, "no query named 'nosuch'"),
          ("query-traversal", "--run r --query ../../etc/passwd", ERROR, "no query named"),
          ("query-param-twice", "--run r --query run_edges -p run=a -p run=b -p task=ioi", ERROR, "given twice"),
          ("query-param-unknown", "--run r --query run_edges -p nosuch=1", ERROR, "has no parameter"),
          ("query-param-nan", "--run r --query run_edges -p run=a -p task=ioi -p min_abs_weight=nan", ERROR, "finite"),
          ("device", "--run r --device cuda", ERROR, "no CUDA GPU|CUDA device"),
      ]],
    *[case(f"evaluate-run-injection-{n}", ["evaluate", "-t", "ioi", "--run", s], ERROR, "")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    # --- shortcut (fails before a model loads) ------------------------------------------------
    *[case(f"shortcut-{n}", "shortcut " + a, k, e)
      for n, a, k, e in [
          ("examples-small", "-n 3", USAGE, "examples"),
          ("min-selectivity-nan", "--min-selectivity nan", ERROR, "finite"),
          ("device", "--device nosuch", ERROR, "unknown device"),
          ("model-unknown", "--model gpt2", ERROR, "unknown model spec"),
          ("model-not-built", "--model zoo:nosuch", ERROR, "not built"),
      ]],
    # --- report -------------------------------------------------------------------------------
    case("report-out-under-a-file", "report --out /etc/passwd/report.html", ERROR, "passwd"),
    case("report-out-is-a-directory", "report --out {tmp}", ERROR, "is a directory"),
    case("report-out-name-too-long", ["report", "--out", "/tmp/" + "a" * 5000 + "/r.html"], ERROR, "cannot be used"),
    case("evaluate-out-under-a-file", "evaluate -t ioi --run r --out /etc/passwd/ev", ERROR, "inside /etc/passwd"),
    case("roi-out-under-a-file", "roi fit -t ioi --run r --out /etc/passwd/rois", ERROR, "inside /etc/passwd"),
    case("disentangle-out-under-a-file", "disentangle -m m -t ioi -t sva --out /etc/passwd/d", ERROR, "inside /etc/passwd"),
    case("shortcut-out-is-a-directory", "shortcut --out {tmp}", ERROR, "is a directory"),
    # --- communities --------------------------------------------------------------------------
    *[case(f"communities-{n}", "communities -m sample-tiny --checkpoint final -t ioi " + a, k, e)
      for n, a, k, e in [
          ("method", "--method kmeans", USAGE, "method"),
          ("objective", "--objective entropy", USAGE, "objective"),
          ("weights", "--weights negative", USAGE, "weights"),
          ("resolution-negative", "--resolution -1", USAGE, "resolution"),
          ("resolution-nan", "--resolution nan", ERROR, "--resolution must be a finite number"),
          ("resolution-inf", "--resolution inf", ERROR, "finite"),
          ("granularity", "--granularity layer", USAGE, "granularity must be feature, head or roi"),
          ("min-weight-negative", "--min-abs-weight -2", USAGE, "min_abs_weight"),
          ("min-weight-nan", "--min-abs-weight nan", ERROR, "finite"),
          ("kind", "--kind Nosuch", USAGE, "kind|Nosuch"),
          ("kind-injection", "--kind Feature)--(n", USAGE, "kind|Feature"),
          ("layer-huge", "--layer 99999999999999999999999", ERROR, "64-bit"),
          ("seed-huge", "--seed 99999999999999999999999", ERROR, "64-bit"),
          ("run-unknown", "--run ingest-000000000000", ERROR, "no edges|ingest-000000000000|nothing"),
          ("no-ingest-run", "", ERROR, "ingest run"),
      ]],
    *[case(f"communities-model-injection-{n}", ["communities", "-m", s, "--checkpoint", "final", "-t", "ioi"], ERROR, "")
      for s, n in zip(INJECTIONS, INJECTION_IDS, strict=True)],
    *[case(f"communities-task-injection-{n}", ["communities", "-m", "sample-tiny", "--checkpoint", "final", "-t", s],
           ERROR, "") for s, n in zip(INJECTIONS[:3], INJECTION_IDS[:3], strict=True)],
    # --- disentangle --------------------------------------------------------------------------
    *[case(f"disentangle-{n}", "disentangle -m {model} -t ioi " + a, k, e)
      for n, a, k, e in [
          ("one-task", "", USAGE, "at least two"),
          ("null", "-t sva --null bootstrap", USAGE, "null"),
          ("draws-zero", "-t sva --draws 0", USAGE, "draws"),
          ("top-k-zero", "-t sva --top-k 0", USAGE, "top_k"),
          ("examples-zero", "-t sva -n 0", USAGE, "examples"),
          ("method", "-t sva --method kmeans", USAGE, "method"),
          ("ablation", "-t sva --ablation half", USAGE, "ablation"),
          ("resolution-nan", "-t sva --resolution nan", ERROR, "finite"),
          ("device", "-t sva --device cuda:3", ERROR, "CUDA"),
          ("no-ingest-run", "-t sva", ERROR, "no ingested ioi graph"),
      ]],
    # --- zoo and model ------------------------------------------------------------------------
    case("zoo-build-unknown-size", "zoo build --size mt-huge --zoo {tmp}/zoo-never", ERROR, "unknown zoo size"),
    case("zoo-build-device", "zoo build --device cuda --zoo {tmp}/zoo-never", ERROR, "no CUDA GPU|CUDA device"),
    case("zoo-list-format", "zoo list --format xml", USAGE, "xml"),
    case("zoo-unknown-subcommand", "zoo destroy", USAGE, "No such command"),
    *[case(f"model-check-{n}", ["model", "check", m], ERROR, e)
      for n, m, e in [("unknown", "gpt2", "unknown model spec"), ("empty", "", "empty"),
                      ("bad-checkpoint", "zoo:a@b", "checkpoint"), ("hf-missing", "hf:", "missing"),
                      ("scheme", "s3:x", "scheme"), ("not-built", "zoo:nosuch", "not built"),
                      ("no-step", "zoo:micro@99", "no checkpoint at step 99"),
                      ("path-missing", "path:/nonexistent", "nonexistent|not a mechgraph|does not")]],
    case("model-check-device", "model check {model} --device nosuch", ERROR, "unknown device"),
    case("model-check-traversal", "model check zoo:../../etc/passwd", ERROR, "model spec|not built|name"),
    # --- roi ------------------------------------------------------------------------------------
    *[case(f"roi-fit-{n}", "roi fit -t ioi " + a, k, e)
      for n, a, k, e in [
          ("no-graph", "", USAGE, "run|model"),
          ("blocks-zero", "--run r --blocks 0", USAGE, "blocks"),
          ("max-blocks-zero", "--run r --max-blocks 0", USAGE, "blocks"),
          ("signal", "--run r --signal noise", USAGE, "signal"),
          ("similarity", "--run r --similarity cosine", USAGE, "similarity"),
          ("covariance", "--run r --covariance tied", USAGE, "covariance"),
          ("aggregate", "--run r --aggregate median", USAGE, "aggregate"),
          ("min-active-negative", "--run r --min-active -1", USAGE, "min_active"),
          ("min-active-nan", "--run r --min-active nan", ERROR, "finite"),
          ("partitions-zero", "--run r --partitions 0", USAGE, "partitions"),
          ("examples-zero", "--run r -n 0", USAGE, "examples"),
          ("run-unknown", "--run ingest-000000000000", ERROR, "ingest-000000000000"),
          ("run-not-ingest", "--run {run}", ERROR, "{run}"),
          ("device", "--run r --device cuda", ERROR, "CUDA"),
      ]],
    *[case(f"roi-show-{n}", ["roi", "show", r], ERROR, "")
      for r, n in [("roi-000000000000", "unknown"), ("../../etc/passwd", "traversal"), *zip(INJECTIONS[:4], INJECTION_IDS[:4])]],
    # --- match ----------------------------------------------------------------------------------
    *[case(f"match-{n}", a, k, e)
      for n, a, k, e in [
          ("features-not-built", "match features -m zoo:nosuch --from 1 --to 2", ERROR, "not built"),
          ("features-no-step", "match features -m zoo:micro --from 1 --to 3", ERROR, "no checkpoint at step 1"),
          ("features-method", "match features -m zoo:micro --from 3 --to 3 --method magic", USAGE, "method"),
          ("features-min-score-nan", "match features -m zoo:micro --from 3 --to 3 --min-score nan", ERROR, "finite"),
          ("features-examples-zero", "match features -m zoo:micro --from 3 --to 3 -n 0", USAGE, "examples"),
          ("features-device", "match features -m zoo:micro --from 3 --to 3 --device cuda", ERROR, "CUDA"),
          ("timeline-no-runs", "match timeline -m nosuch", ERROR, "nosuch"),
          ("timeline-min-jaccard-nan", "match timeline -m mt-small --min-jaccard nan", ERROR, "finite"),
          ("timeline-level-negative", "match timeline -m mt-small --level -1", USAGE, "level"),
          ("sizes-no-runs", "match sizes --small nosuch --large other", ERROR, "nosuch"),
          ("sizes-min-similarity-nan", "match sizes --min-similarity nan", ERROR, "finite"),
          ("sizes-examples-zero", "match sizes -n 0", USAGE, "examples"),
      ]],
    # --- demo (argument validation only: a valid demo would build the zoo) --------------------
    *[case(f"demo-{n}", "demo " + a, k, e, env={"MECHGRAPH_ZOO": "{tmp}/zoo-never"})
      for n, a, k, e in [
          ("examples-small", "-n 3", USAGE, "examples must be at least 4"),
          ("examples-huge", "-n 1000000000", USAGE, "examples"),
          ("step-negative", "--step -5", USAGE, "step"),
          ("device", "--device cuda", ERROR, "no CUDA GPU|CUDA device"),
          ("device-unknown", "--device tpu", ERROR, "unknown device"),
          ("data-dir-file", "-n 8", ERROR, "not a directory"),
      ]],
]
# demo-data-dir-file needs the root option in front
CASES = [Case(c.id, ("--data-dir", "/etc/passwd", *c.argv), c.kind, c.expect, c.env + (("NEO4J_URI", None),))
         if c.id == "demo-data-dir-file" else c for c in CASES]


# -- fixtures -------------------------------------------------------------------------------

_CHECKSUM = """
CALL () { MATCH (n) RETURN collect([labels(n), [k IN keys(n) | [k, n[k]]]]) AS nodes }
CALL () { MATCH (a)-[r]->(b) RETURN collect([type(r), a.key, b.key, [k IN keys(r) | [k, r[k]]]]) AS rels }
RETURN size(nodes) AS n_nodes, size(rels) AS n_rels, nodes, rels
"""


def store_state(db: Any) -> tuple[int, int, str]:
    """Node count, relationship count and a hash of every label, type and property (sorted)."""
    row = db.read(_CHECKSUM)[0]
    canon = sorted(json.dumps([sorted(x[0]) if isinstance(x[0], list) else x[0], *x[1:-1], sorted(x[-1])],
                              default=str, sort_keys=True) for x in row["nodes"] + row["rels"])
    return row["n_nodes"], row["n_rels"], hashlib.sha256("\n".join(canon).encode()).hexdigest()


@pytest.fixture(scope="module")
def store(neo4j_settings):
    """The sample graph, written once; yields (database, its :Run id, the state to keep)."""
    with connect(neo4j_settings) as db:
        db.write("MATCH (n) DETACH DELETE n")
        spec = SampleSpec()
        write_sample(GraphWriter(db), spec)
        yield db, spec.run().run_id, store_state(db)


def _row(clean: str, cf: str, answer: str = " ka", cf_answer: str = " mo", **extra: Any) -> str:
    return json.dumps({"clean": clean, "counterfactual": cf, "answer": answer, "cf_answer": cf_answer, **extra})


def _test_rows(make: Any, n: int = 400) -> list[str]:
    """Rows whose clean prompts fall in the held-out split (where ingest reads by default)."""
    from ingest.tasks import split_of

    rows = []
    for i in range(n):
        row = make(i)
        if split_of(json.loads(row)["clean"]) == "test":
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_checkpoint) -> dict[str, str]:
    from ingest.tasks.builtin import SYLLABLES

    files = tmp_path_factory.mktemp("bad-files")
    def seq(i: int, k: int = 4) -> str:
        return " ".join(random.Random(i).choices(SYLLABLES, k=k))

    (files / "meta_string.jsonl").write_text(_row("ka mo si", "ka mo tu", meta="oops") + "\n")
    (files / "meta_list.jsonl").write_text(_row("ka mo si", "ka mo tu", meta=[1, 2]) + "\n")
    (files / "not_json.jsonl").write_text("{clean: ka}\n")
    (files / "missing_field.jsonl").write_text(json.dumps({"clean": "ka mo"}) + "\n")
    (files / "row_list.jsonl").write_text("[1, 2, 3]\n")
    (files / "clean_number.jsonl").write_text(_row(5, "ka mo") + "\n")  # type: ignore[arg-type]
    (files / "same_answers.jsonl").write_text(_row("ka mo si", "ka mo tu", " ka", " ka") + "\n")
    (files / "empty.jsonl").write_text("\n\n")
    (files / "latin1.jsonl").write_bytes(b'{"clean": "caf\xe9 ka", "counterfactual": "caf\xe9 mo", '
                                         b'"answer": " ka", "cf_answer": " mo"}\n')
    (files / "misaligned.jsonl").write_text("\n".join(_test_rows(lambda i: _row(seq(i), seq(i, 6)))) + "\n")
    (files / "multi_token.jsonl").write_text("\n".join(_test_rows(lambda i: _row(seq(i), seq(i + 1), " ka mo"))) + "\n")
    (files / "oov.jsonl").write_text("\n".join(_test_rows(lambda i: _row(f"zyzzyva{i} ka", f"zyzzyva{i} mo"))) + "\n")
    (files / "too_long.jsonl").write_text("\n".join(_test_rows(lambda i: _row(seq(i, 30), seq(i + 1, 30)))) + "\n")
    (files / "colors.jsonl").write_text("\n".join(_row(seq(i), seq(i + 1)) for i in range(60)) + "\n")

    model = tiny_checkpoint(D, 32, 3)
    nan_model = files / "nan-ckpt"
    shutil.copytree(model, nan_model)
    from safetensors.torch import load_file, save_file

    weights = load_file(nan_model / "model.safetensors")
    weights["blocks.0.mlp.W_out"][0, 0] = float("nan")
    save_file(weights, nan_model / "model.safetensors")

    zoo = files / "zoo"
    (zoo / "micro").mkdir(parents=True)
    (zoo / "micro" / "manifest.json").write_text(json.dumps(
        {"name": "micro", "kind": "toy", "checkpoints": [{"step": 3, "tasks": {}, "saes": {}}]}))
    return {"model": f"path:{model}", "nan_model": f"path:{nan_model}", "files": str(files),
            "tmp": str(tmp_path_factory.mktemp("bad-tmp")), "zoo": str(zoo)}


@pytest.fixture(scope="module")
def cli_env(neo4j_settings, paths, tmp_path_factory) -> dict[str, str | None]:
    return {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
            "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None,
            "MECHGRAPH_HOME": str(tmp_path_factory.mktemp("bad-home")), "MECHGRAPH_ZOO": paths["zoo"],
            "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _fill(text: str, values: dict[str, str]) -> str:
    return text.replace("{", "\0").replace("\0model}", values["model"]).replace(
        "\0nan_model}", values["nan_model"]).replace("\0files}", values["files"]).replace(
        "\0tmp}", values["tmp"]).replace("\0run}", values["run"]).replace("\0", "{")


def message_of(res: Any, kind: str) -> str:
    """The error sentence, after checking the shape of the failure (module docstring)."""
    out = res.stderr + res.stdout
    assert "Traceback" not in out, out
    if kind == ERROR:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 1, (res.exit_code, out)
        assert len(lines) == 1 and lines[0].startswith("mechgraph: error: "), res.stderr
        assert res.stdout.strip() == "", res.stdout
        return lines[0][len("mechgraph: error: "):]
    assert res.exit_code == 2, (res.exit_code, out)
    lines = res.stderr.splitlines()
    assert lines and lines[0].startswith("Usage: "), res.stderr
    assert sum("─ Error ─" in ln for ln in lines) == 1, res.stderr
    return " ".join(ln.strip("│╭╮╰╯─ ") for ln in lines[2:])


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    # CUDA_VISIBLE_DEVICES must not hide the machine's real answer; nothing to change, but
    # keep the tests from inheriting a debug flag that would show tracebacks.
    monkeypatch.delenv("MECHGRAPH_DEBUG", raising=False)


def _marks(c: Case) -> list[Any]:
    return [pytest.mark.slow] if c.slow else []


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input(c: Case, store, paths, cli_env) -> None:
    db, run, before = store
    values = {**paths, "run": run}
    argv = [_fill(a, values) for a in c.argv]
    env = {**cli_env, **{k: (_fill(v, values) if v else v) for k, v in c.env}}
    res = CliRunner().invoke(app, argv, env=env)
    message = message_of(res, c.kind)
    assert re.search(_fill(c.expect, values), message), (c.expect, message)
    assert store_state(db) == before, "the store changed"


def test_the_suite_is_large_and_every_command_is_covered() -> None:
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)
    commands = {next(a for a in c.argv if not a.startswith("-") and a != "/etc/passwd") for c in CASES}
    assert {"ingest", "demo", "evaluate", "report", "shortcut", "communities", "disentangle", "db", "query",
            "zoo", "model", "roi", "match"} <= commands


@pytest.mark.parametrize("value", INJECTIONS, ids=INJECTION_IDS)
def test_injection_strings_as_string_parameters_are_data(value, store, cli_env) -> None:
    """A string ``-p`` value is a Cypher parameter: it matches nothing and changes nothing."""
    db, _, before = store
    res = CliRunner().invoke(app, ["query", "run", "task_subgraph", "-p", f"model={value}", "-p", "checkpoint=final",
                                   "-p", "task=ioi", "--format", "json"], env=cli_env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == []
    assert store_state(db) == before


# -- the same through the real entry point, a few cases as subprocesses --------------------

SUBPROCESS = [
    (["--data-dir", "/etc/passwd", "db", "start"], {"NEO4J_URI": ""}, "not a directory"),
    (["query", "run", "task_subgraph", "-p", "model=x", "-p", "checkpoint=y", "-p", "task=z",
      "-p", "limit=99999999999999999999999"], {}, "64-bit integer"),
    (["ingest", "-m", "{model}", "-t", "py:os:getcwd"], {}, "task's signature"),
    (["ingest", "-m", "{model}", "-t", "ioi", "--device", "cuda:99"], {}, "CUDA"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,env,expect", SUBPROCESS, ids=["data-dir", "query-overflow", "py-task", "device"])
def test_bad_input_through_the_console_script(argv, env, expect, store, paths, cli_env) -> None:
    db, run, before = store
    values = {**paths, "run": run}
    full_env = {k: v for k, v in {**os.environ, **cli_env, **env}.items() if v}
    full_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", "from analysis.cli import main; main()",
                           *[_fill(a, values) for a in argv]], capture_output=True, text=True, env=full_env,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mechgraph: error: ") and expect in lines[0], proc.stderr
    assert store_state(db) == before


# -- the fixes behind some cases, checked below the CLI ---------------------------------------

def test_a_release_spec_is_checked_before_the_model_loads(monkeypatch) -> None:
    """An unobtainable ``release:`` SAE fails in resolve() without loading the model."""
    from huggingface_hub import constants

    import ingest.zoo.specs as specs
    from ingest.errors import DictionaryError
    from ingest.pipeline import IngestConfig, resolve

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-hf-cache")
    monkeypatch.setattr(specs, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    config = IngestConfig(model="path:/nonexistent", tasks=("ioi",),
                          dicts=("release:gpt2-small-res-jb/blocks.0.hook_resid_pre",))
    with pytest.raises(DictionaryError, match=r"could not fetch SAE .*offline"):
        resolve(config)


def test_checking_a_release_spec_imports_neither_torch_nor_sae_lens() -> None:
    code = ("import sys, time; from huggingface_hub import constants; constants.HF_HUB_OFFLINE = True; "
            "constants.HF_HUB_CACHE = '/nonexistent-hf-cache'\n"
            "from ingest.dictionaries import check_dictionary_spec\n"
            "t = time.perf_counter()\n"
            "try:\n    check_dictionary_spec('release:gpt2-small-res-jb/blocks.0.hook_resid_pre')\n"
            "except Exception as e:\n    print(type(e).__name__)\n"
            "print(round(time.perf_counter() - t, 2), sorted(m for m in ('torch', 'sae_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}).stdout.split("\n")
    assert out[0] == "DictionaryError" and out[1].endswith("[]"), out
    assert float(out[1].split()[0]) < 5  # well under a second on an idle machine; the bound allows a busy one


def test_sweep_budgets_are_distinct_and_capped() -> None:
    from analysis.evaluate.sweep import MAX_SWEEP, EvaluateConfig, sweep_budgets

    budgets = sweep_budgets(248, MAX_SWEEP)
    assert budgets == sorted(set(budgets)) and len(budgets) <= MAX_SWEEP and budgets[-1] == 248
    assert len(sweep_budgets(20, 50)) <= 20
    with pytest.raises(ValueError, match="at most 100"):
        EvaluateConfig(task="ioi", run="r", sweep=1000)


def test_examples_are_bounded_by_what_a_task_provides(tmp_path) -> None:
    from ingest.errors import TaskError
    from ingest.tasks import get_task
    from ingest.tasks.registry import MAX_GENERATED_EXAMPLES

    with pytest.raises(TaskError, match="at most 10,000"):
        get_task("ioi").examples(10**9)
    assert len(get_task("ioi").examples(3)) == 3 and MAX_GENERATED_EXAMPLES == 10_000
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(_row(f"ka mo {s}", f"ka mo {s}") for s in ("si", "tu", "ra", "ni", "ko")))
    task = get_task(f"jsonl:{path}")
    n = task.available("train")
    assert 0 < n <= 5 and len({e.clean for e in task.examples(n, split="train")}) == n  # distinct rows
    with pytest.raises(TaskError, match=f"cannot provide {n + 1} train examples"):
        task.examples(n + 1, split="train")
