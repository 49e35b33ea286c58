"""File formats: the native model folder, Magenta checkpoint folders (and the TF bundle reader
under them), legacy GANSpaceSynth PCA pickles."""
