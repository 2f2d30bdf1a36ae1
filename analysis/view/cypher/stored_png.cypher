// Whether a PNG path is one the store names (an evaluation's curve or a kill-table heatmap): the
// explorer serves no other file.
// params: $path
// returns: n
CALL () {
  MATCH (e:Evaluation) WHERE e.png = $path RETURN count(e) AS c
  UNION ALL
  MATCH (d:Disentanglement) WHERE $path IN coalesce(d.pngs, []) RETURN count(d) AS c
}
RETURN sum(c) AS n
