"""Analyses of coupled runs: plots against the truth run and the counterfactual response."""
