// The communities runs that the features of one prompt graph belong to (through each prompt
// node's `feature`, the task-graph node it is an occurrence of, as `mechgraph view` groups them),
// newest first; imported supernodes (attached to the prompt nodes themselves) are not runs here.
// params: $key (the :Prompt key)
// returns: run, covered (prompt nodes whose feature is in one of the run's communities), created_at
MATCH (:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode)
WHERE n.feature IS NOT NULL
MATCH (:Node {key: n.feature})-[m:IN_COMMUNITY]->(c:Community)
WHERE m.run IS NOT NULL AND c.member_ids IS NULL
WITH m.run AS run, count(DISTINCT n) AS covered
OPTIONAL MATCH (r:Run {run: run})
RETURN run, covered, r.created_at AS created_at
ORDER BY coalesce(created_at, 0.0) DESC, run
