// Every community of one community run at one level, with the keys of all its members.
// Parameters: $run    community run id
//             $level  hierarchy level (0 = the only or finest)
// Returns:    community (key), index, size, model, checkpoint, members (list of node keys)
MATCH (n)-[:IN_COMMUNITY {run: $run}]->(c:Community {run: $run, level: $level})
RETURN c.key AS community, c.index AS index, c.size AS size, c.model AS model, c.checkpoint AS checkpoint,
       collect(n.key) AS members
ORDER BY index
