"""Training data: TFDS builders (`builders`), the embedded procedural dataset (`procedural`)
and the deterministic per-host input pipeline (`pipeline.create_input_iter`).

Submodules are imported explicitly: `pipeline` and `builders` pull in TensorFlow Datasets.
"""
