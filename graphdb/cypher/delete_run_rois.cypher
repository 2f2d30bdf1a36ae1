// Delete one ROI run's :ROI nodes (with their IN_ROI, PRODUCED_BY, AT_CHECKPOINT and ROI-level
// ATTRIBUTES_TO relationships) and the run's remaining ROI-level edges (those between two nodes
// that are not ROIs), so that writing the run again replaces it instead of adding to it.
// The edges are found through their (model, checkpoint, task) index prefix, not by run alone
// (see graphdb/schema.py on why there is no index led by run).
// Parameters: $run         ROI run id
//             $model       model name of the run's graph
//             $checkpoint  checkpoint name of the run's graph
//             $tasks       list of the run's task names
// Returns:    rois (integer, ROI nodes deleted), edges (integer, other ROI-level edges deleted)
OPTIONAL MATCH (r:ROI {run: $run})
DETACH DELETE r
WITH count(r) AS rois
UNWIND $tasks AS task
OPTIONAL MATCH ()-[e:ATTRIBUTES_TO]->()
WHERE e.model = $model AND e.checkpoint = $checkpoint AND e.task = task AND e.run = $run
DELETE e
RETURN rois, count(e) AS edges
