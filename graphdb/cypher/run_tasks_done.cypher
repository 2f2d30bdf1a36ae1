// The tasks a run has finished writing (resumable ingest skips them).
// Parameters: $key  the :Run node's key
// Returns:    done (list of strings, empty when the run or the property does not exist)
OPTIONAL MATCH (r:Run {key: $key})
RETURN coalesce(r['tasks_done'], []) AS done
