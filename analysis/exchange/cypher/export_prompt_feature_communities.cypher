// The communities of one run that the nodes of one prompt graph belong to through their `feature`
// (the task-graph node each feature or error node is an occurrence of, as `mechgraph view` groups
// them), one community per node (its lowest level: a partition, as supernodes must be), with the
// members' layers and a member's description for a readable label.
// params: $key (the :Prompt key), $run (a communities run id)
// returns: kind ('community'), group (every property of the :Community), members (prompt node keys),
//          layers (the members' layers), description (a member feature's description, or null)
MATCH (:Prompt {key: $key})<-[:IN_PROMPT]-(n:PromptNode)
WHERE n.kind IN ['feature', 'error']
MATCH (f:Node {key: n.feature})-[:IN_COMMUNITY {run: $run}]->(c:Community)
WITH n, f, c
ORDER BY c.level
WITH n, f, collect(c)[0] AS c
WITH c, n, f ORDER BY coalesce(n.influence, 1.0), n.key
WITH c, collect(n.key) AS members, collect(n.layer) AS layers, [d IN collect(f.description) WHERE d <> ''] AS ds
RETURN 'community' AS kind, c {.*} AS group, members, layers, ds[0] AS description
ORDER BY group.index
