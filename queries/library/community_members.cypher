// name: community_members
// summary: The members of one community of a communities run, with their layer and their strongest |weight| inside the community.
// param run: string  communities run id (printed by `mechgraph communities`)
// param index: int = 0  community index (0 = the largest)
// param level: int = 0  hierarchy level (0 = the only or finest)
// returns: node, layer, internal_abs_weight
MATCH (n)-[:IN_COMMUNITY {run: $run}]->(c:Community {run: $run, level: $level, index: $index})
OPTIONAL MATCH (n)-[r:ATTRIBUTES_TO]-(m)-[:IN_COMMUNITY {run: $run}]->(c)
WITH n, max(r.abs_weight) AS internal_abs_weight
RETURN n.key AS node, n.layer AS layer, internal_abs_weight
ORDER BY internal_abs_weight DESC, node
