// Link every :Disentanglement row of one communities run to its :Community again. Writing a
// communities run replaces its :Community nodes (and with them every relationship into them),
// and several disentangle runs (other nulls, draws, ablations) share one communities run.
// Parameters: $run  communities run id
// Returns:    linked (integer, rows linked)
MATCH (d:Disentanglement {communities_run: $run})
WHERE d.index IS NOT NULL
MATCH (c:Community {run: $run, level: 0, index: d.index})
MERGE (d)-[:DESCRIBES]->(c)
RETURN count(*) AS linked
