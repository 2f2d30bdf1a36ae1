// name: runs
// summary: Provenance of every run: kind, configuration hash, seed, code version and time, newest first.
// returns: run, kind, config_hash, seed, code_version, created_at, tasks
MATCH (r:Run)
OPTIONAL MATCH (r)-[:FOR_TASK]->(t:Task)
WITH r, collect(t.name) AS tasks
ORDER BY r.created_at DESC
RETURN r.run AS run, r.kind AS kind, r.config_hash AS config_hash, r.seed AS seed,
       r.code_version AS code_version, datetime({epochMillis: toInteger(r.created_at * 1000)}) AS created_at,
       tasks
