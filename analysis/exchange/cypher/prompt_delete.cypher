// Delete what a failed import of one prompt graph wrote: its nodes (with their edges), its
// supernode communities and the prompt. The import's :Run stays (other prompts share it).
// params: $key (the :Prompt key), $prompt (the prompt id), $run (the supernodes' run)
// returns: nothing
CALL () {
  MATCH (n:PromptNode {prompt: $prompt}) DETACH DELETE n
}
CALL () {
  MATCH (c:Community {run: $run}) DETACH DELETE c
}
MATCH (p:Prompt {key: $key}) DETACH DELETE p
