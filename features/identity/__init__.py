"""Identity resolution: one golden profile per person, stable ids, explainable merges."""
