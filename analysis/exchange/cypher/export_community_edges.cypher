// The edges between members of one community, within the graph its run partitioned (the
// edge's run, granularity and tasks as the community records them).
// params: $community (the :Community key)
// returns: source, target, weight
MATCH (c:Community {key: $community})<-[:IN_COMMUNITY]-(a)-[r:ATTRIBUTES_TO]->(b)-[:IN_COMMUNITY]->(c)
WHERE (c.graph_run IS NULL OR r.run = c.graph_run) AND (c.granularity IS NULL OR r.granularity = c.granularity)
  AND (c.tasks IS NULL OR r.task IN c.tasks) AND r.abs_weight >= coalesce(c.min_abs_weight, 0.0)
RETURN a.key AS source, b.key AS target, r.weight AS weight
ORDER BY abs(weight) DESC
