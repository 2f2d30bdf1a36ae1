// Finish one write of an ROI run, in one transaction (graphdb/generations.py): delete the run's
// :ROI nodes (with their relationships), IN_ROI memberships and ROI-level ATTRIBUTES_TO edges
// that this write (generation $gen) did not write again, and mark the run as holding generation
// $gen with every task's ROI-level graph done. The edges are found through their (model,
// checkpoint, task) index prefix, not by run alone (see graphdb/schema.py on why there is no
// index led by run). Nothing happens when another write of the run began after this one: no
// row is returned.
// Parameters: $key         the :Run node's key
//             $run         ROI run id
//             $gen         this write's generation
//             $model       model name of the run's graph
//             $checkpoint  checkpoint name of the run's graph
//             $tasks       list of the run's task names
// Returns:    rois, members, edges (integers, stale ones deleted)
MATCH (r:Run {key: $key})
WHERE r.writing_gen = $gen
CALL (r) {
  OPTIONAL MATCH (g:ROI {run: $run})
  WHERE g.gen IS NULL OR g.gen <> $gen
  DETACH DELETE g
  RETURN count(g) AS rois
}
CALL (r) {
  OPTIONAL MATCH (:ROI {run: $run})<-[m:IN_ROI]-()
  WHERE m.gen IS NULL OR m.gen <> $gen
  DELETE m
  RETURN count(m) AS members
}
CALL (r) {
  UNWIND $tasks AS task
  OPTIONAL MATCH ()-[e:ATTRIBUTES_TO]->()
  WHERE e.model = $model AND e.checkpoint = $checkpoint AND e.task = task AND e.run = $run
    AND (e.gen IS NULL OR e.gen <> $gen)
  DELETE e
  RETURN count(e) AS edges
}
SET r.gen = $gen, r.finished_at = timestamp() / 1000.0, r.tasks_done = $tasks, r.tasks_writing = []
REMOVE r.writing_gen
RETURN rois, members, edges
