"""``mechgraph report`` on the sample graph: every stored graph is in the sizes table with the
counts Neo4j holds, a communities run appears with its sizes, missing analyses say so, and the
page embeds the evaluation's plot."""

from __future__ import annotations

import re

from analysis.report.html import write_report
from graphdb.sample import SampleSpec, write_sample
from graphdb.writer import GraphWriter


def test_report_of_the_sample_graph(db, tmp_path):
    spec = SampleSpec()
    write_sample(GraphWriter(db), spec)
    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph

    sub = pull_subgraph(db, Selection(spec.model, spec.checkpoints[-1], spec.tasks))
    config = CommunityConfig(seed=0)
    part = partition(sub, config)
    write_communities(db, sub, part, config)
    png = tmp_path / "curve.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    db.write("CREATE (:Evaluation {name: 'edge-summary', run: 'evaluate-x', graph_run: 'r', model: 'm', "
             "checkpoint: 'c', task: 'ioi', ablation: 'edge', cpr: 0.5, cmd: 0.25, csv: 'x.csv', png: $png})",
             {"png": str(png)})

    page = write_report(db, tmp_path, tmp_path / "report.html").read_text()
    graphs = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN count(DISTINCT [r.run, r.task, r.granularity, "
                     "r.checkpoint]) AS n, count(r) AS e")[0]
    sizes = page.split("nodes and edges per run")[1].split("</table>")[0]
    assert sizes.count("<tr>") == graphs["n"] + 1  # + the header
    edge_counts = [int(x) for x in re.findall(r"<td>(\d+)</td><td>[\d.]+</td></tr>", sizes)]
    assert sum(edge_counts) == graphs["e"]
    assert f"<td>{len(set(part.labels[0].tolist()))}</td>" in page.split("communities runs")[1]
    assert "No ROIs yet" in page
    assert page.count("data:image/png;base64,") == 1 and "<td>0.5</td>" in page


def test_csv_cells_keep_integers_integers(tmp_path):
    from analysis.report.html import _csv_rows
    path = tmp_path / "purity.csv"
    path.write_text("community,size,purity,task\n0,153,0.5612,ioi\n")
    assert _csv_rows(path) == [{"community": 0, "size": 153, "purity": 0.561, "task": "ioi"}]
