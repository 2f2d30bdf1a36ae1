// name: run_config
// summary: One run's kind and configuration (canonical JSON), e.g. to rebuild an ingest's model and dictionaries.
// param run: string  run id
// returns: run, kind, config
MATCH (r:Run {run: $run})
RETURN r.run AS run, r.kind AS kind, r.config AS config
