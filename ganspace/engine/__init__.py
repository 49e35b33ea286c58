"""The generation engine: the GANSynth generator, the model object, audio, latents, MIDI
rendering and the generation benchmark."""
