// name: task_spec
// summary: The spec a stored task was ingested from (a JSONL task's absolute path, a registered task's name and parameters), to re-read its examples.
// param task: string  task name as stored, e.g. my_task
// returns: name, spec
MATCH (t:Task {name: $task})
RETURN t.name AS name, t.spec AS spec
