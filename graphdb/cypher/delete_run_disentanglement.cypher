// Delete one disentangle run's :Disentanglement nodes and their relationships, so that writing
// the run again replaces its summary instead of adding to it (a changed number of communities
// leaves no stale rows).
// Parameters: $run  run id
// Returns:    deleted (integer, nodes deleted)
MATCH (d:Disentanglement {run: $run})
DETACH DELETE d
RETURN count(*) AS deleted
