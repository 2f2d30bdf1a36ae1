// name: report_rois
// summary: Every ROI run, per dictionary: number of ROIs, mean size, size-weighted within-ROI decoder cosine and correlation against the random-partition baseline.
// returns: run, model, checkpoint, hook, rois, mean_size, decoder_cosine, baseline_cosine, correlation, baseline_correlation
MATCH (g:ROI)
WITH g.run AS run, g.model AS model, g.checkpoint AS checkpoint, g.hook AS hook, g.layer AS layer,
     count(g) AS rois, avg(g.size) AS mean_size, sum(g.size) AS total,
     sum(g.size * g.decoder_cosine) AS wc, sum(g.size * g.correlation) AS wr,
     avg(g.baseline_cosine) AS baseline_cosine, avg(g.baseline_correlation) AS baseline_correlation
RETURN run, model, checkpoint, hook, rois, mean_size, wc / total AS decoder_cosine, baseline_cosine,
       wr / total AS correlation, baseline_correlation
ORDER BY run, layer, hook
