"""The generation engine: the GANSynth generator, Magenta's hyper-parameters, the model object,
audio, latents, MIDI rendering and the generation benchmark.

The file formats (:mod:`ganspace.formats`) build on the engine; the engine calls into them only
in ``GANSynthModel.save`` (the native format) and the benchmark's ``time_load``."""
