"""Everything that touches the model: forward, backward, attribution, ablation."""
