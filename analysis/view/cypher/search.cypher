// Nodes whose key or description contains the text (a key prefix is an index seek on Node.key).
// params: $q (lower-cased text), $model ('*' = any), $checkpoint ('*' = any), $limit
// returns: key, kind, model, checkpoint, layer, description
CALL () {
  MATCH (n:Node) WHERE n.key STARTS WITH $q
  RETURN n
  UNION
  MATCH (n:Feature|ROI|ErrorNode|Output|Input|Head)
  WHERE toLower(n.key) CONTAINS $q OR toLower(coalesce(n.description, '')) CONTAINS $q
  RETURN n
  UNION
  MATCH (n:Community) WHERE toLower(n.key) CONTAINS $q
  RETURN n
}
WITH n
WHERE ($model = '*' OR n.model = $model) AND ($checkpoint = '*' OR n.checkpoint = $checkpoint)
RETURN n.key AS key, [l IN labels(n) WHERE l <> 'Node'][0] AS kind, n.model AS model, n.checkpoint AS checkpoint,
       n.layer AS layer, n.description AS description
LIMIT $limit
