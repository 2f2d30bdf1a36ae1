"""Exchange with the field's tools: attribution graphs out to and in from Neuronpedia graph JSON.

* :mod:`analysis.exchange.neuronpedia`: the format's conventions (node ids, feature types,
  layers), one place;
* :mod:`analysis.exchange.export`: any stored graph (a prompt graph, a task graph, a library
  query's edges) to one JSON file, communities and ROIs as ``qParams.supernodes``;
* :mod:`analysis.exchange.stream`: a file read as a stream of events (ijson), links one by one;
* :mod:`analysis.exchange.load`: Neuronpedia / circuit-tracer files into Neo4j as prompt
  graphs, streamed through the prompt graphs' own write path;
* :mod:`analysis.exchange.cli`: ``mechgraph export neuronpedia`` and ``mechgraph import neuronpedia``.
"""
