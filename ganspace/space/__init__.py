"""GANSpace: directions files, PCA of a generator layer, hallucination."""
