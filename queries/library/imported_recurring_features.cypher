// name: imported_recurring_features
// summary: Transcoder features that recur across the prompt graphs of one model (imported from Neuronpedia / circuit-tracer files, or traced): in how many prompts, which slugs, at which positions.
// param model: string  model name as stored (`import neuronpedia --model`, else the files' metadata.scan)
// param task: string = neuronpedia  the prompts' task (imports: neuronpedia unless --task said otherwise; traces: trace)
// param min_prompts: int = 2  only features in at least this many prompts
// param limit: int = 50  at most this many features
// returns: feature, layer, index, prompts, occurrences, slugs, positions, mean_activation, clerp
MATCH (p:Prompt)<-[:IN_PROMPT]-(n:PromptNode)
WHERE p.model = $model AND p.task = $task AND n.kind = 'feature'
WITH n.feature AS feature, n.layer AS layer, n.index AS index, count(DISTINCT p) AS prompts, count(n) AS occurrences,
     collect(DISTINCT p.slug) AS slugs, collect(DISTINCT n.position) AS positions,
     avg(n.activation) AS mean_activation, collect(DISTINCT n.clerp) AS clerps
WHERE prompts >= $min_prompts
RETURN feature, layer, index, prompts, occurrences, slugs, positions, mean_activation,
       head([c IN clerps WHERE c <> '']) AS clerp
ORDER BY prompts DESC, occurrences DESC, feature
LIMIT $limit
