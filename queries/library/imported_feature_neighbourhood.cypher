// name: imported_feature_neighbourhood
// summary: A transcoder feature's in- and out-edges over every prompt graph of one model (imported or traced), summed over prompts and positions, per neighbour.
// param model: string  model name as stored (`import neuronpedia --model`, else the files' metadata.scan)
// param layer: int  the feature's layer
// param index: int  the feature's index in its layer's transcoder
// param task: string = neuronpedia  the prompts' task (imports: neuronpedia unless --task said otherwise; traces: trace)
// returns: direction, other, other_kind, other_layer, prompts, links, total_weight, mean_weight
MATCH (p:Prompt)<-[:IN_PROMPT]-(n:PromptNode)
WHERE p.model = $model AND p.task = $task AND n.kind = 'feature' AND n.layer = $layer AND n.index = $index
MATCH (n)-[r:ATTRIBUTES_TO]-(m:PromptNode)
WHERE r.granularity = 'prompt'
WITH CASE WHEN startNode(r) = n THEN 'out' ELSE 'in' END AS direction, m.feature AS other, m.kind AS other_kind,
     m.layer AS other_layer, count(DISTINCT p) AS prompts, count(r) AS links, sum(r.weight) AS total_weight,
     avg(r.weight) AS mean_weight
RETURN direction, other, other_kind, other_layer, prompts, links, total_weight, mean_weight
ORDER BY direction, abs(total_weight) DESC
