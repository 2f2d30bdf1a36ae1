// name: report_communities
// summary: Every communities run: its configuration, how many communities at each level, their sizes (largest first) and modularity.
// returns: run, config, level, method, communities, sizes, modularity
MATCH (c:Community)-[:PRODUCED_BY]->(r:Run)
WITH r, c ORDER BY c.size DESC
WITH r, c.level AS level, collect(c.size) AS sizes, collect(c.method)[0] AS method, max(c.modularity) AS modularity
RETURN r.run AS run, r.config AS config, level, method, size(sizes) AS communities, sizes, modularity
ORDER BY r.created_at DESC, level
