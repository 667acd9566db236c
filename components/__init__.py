"""Other Earth-system components: the coarse classical model and data/forcing components."""
