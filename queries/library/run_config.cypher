// name: run_config
// summary: One run's kind and configuration (canonical JSON), e.g. to rebuild an ingest's model and dictionaries, with the tasks it has finished and those it is still writing (or was writing when it stopped).
// param run: string  run id
// returns: run, kind, config, tasks_done, tasks_writing
MATCH (r:Run {run: $run})
RETURN r.run AS run, r.kind AS kind, r.config AS config, coalesce(r.tasks_done, []) AS tasks_done,
       coalesce(r.tasks_writing, []) AS tasks_writing
