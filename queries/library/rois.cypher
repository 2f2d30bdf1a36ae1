// name: rois
// summary: The ROIs of one ROI run (`mechgraph roi fit`) with their size and within-ROI decoder cosine and correlation against the random-partition baseline, by hook and index.
// param run: string  ROI run id (printed by `mechgraph roi fit`)
// returns: roi, hook, index, size, decoder_cosine, baseline_cosine, cosine_z, correlation, baseline_correlation
MATCH (r:ROI {run: $run})
RETURN r.key AS roi, r.hook AS hook, r.index AS index, r.size AS size, r.decoder_cosine AS decoder_cosine,
       r.baseline_cosine AS baseline_cosine, r.cosine_z AS cosine_z, r.correlation AS correlation,
       r.baseline_correlation AS baseline_correlation
ORDER BY r.layer, hook, index
