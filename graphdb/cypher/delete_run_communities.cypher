// Delete one run's :Community nodes and their IN_COMMUNITY / PRODUCED_BY relationships, so
// that writing the run again replaces its communities instead of adding to them.
// Parameters: $run  run id
// Returns:    deleted (integer, communities deleted)
MATCH (c:Community {run: $run})
DETACH DELETE c
RETURN count(*) AS deleted
