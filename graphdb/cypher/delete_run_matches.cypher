// Delete one matching run's MATCHES relationships, so that writing the run again replaces its
// matches instead of adding to them (the Feature nodes stay: other runs and graphs use them).
// Parameters: $run  matching run id
// Returns:    deleted (integer, relationships deleted)
OPTIONAL MATCH (:Feature)-[m:MATCHES {run: $run}]->(:Feature)
DELETE m
RETURN count(m) AS deleted
