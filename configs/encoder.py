r"""The encoder (images -> w+) of projection and editing, trained on a frozen generator's samples.

Reproduces the original's ResNet-50 encoder setup (its repository ships trained encoders but no
training script, so the loop is ours): LPIPS-VGG + pixel MSE through the frozen generator at
min(lpips_res, resolution), optionally + MSE to the true w+, Adam 1e-4, batch 8, 100k steps.
The input is sized to the generator (input_size=0: its resolution, 32 to 256 px; 256 is the
original's and the only size its .pt format takes). Hardware and time: a GPU or TPU host for the
1024 px generators; the 16 px demo generator runs about 2 s per step on a busy 2-core CPU
(README, "Encoder and attribute predictor"), so use --config.steps=1000 there (about 35 min).

    python launch/train_encoder.py --config=configs/encoder.py \
        --config.generator=anycost-ffhq-config-f.pt --workdir=runs/encoder
    python launch/train_encoder.py --config=configs/encoder.py --config.generator=models/ffhq \
        --config.init=encoder_anycost-ffhq-config-f.pt --config.steps=5000 --workdir=runs/encoder

Every field of :class:`anycost_jax.editing.encoder_training.EncoderTrainConfig` is a field here;
``generator`` (original .pt, our model directory or URL), ``init`` (an encoder to start from)
and ``export_pt`` (also write the original's ``{'state_dict': ...}`` format) say what to load
and write.
"""
import dataclasses

import ml_collections

from anycost_jax.editing.encoder_training import EncoderTrainConfig

# The trunk stays ResNet-50 (tests shrink it through the library). input_size is a field: 0 sizes
# the input to the generator (32 px for generators up to 32 px, their resolution up to 256).
_FIXED = ('stage_sizes', 'width')


def get_config(arg: str = ''):
    del arg
    defaults = EncoderTrainConfig()
    c = ml_collections.ConfigDict({f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)
                                   if f.name not in _FIXED})
    c.generator = ''
    c.init = ''
    c.export_pt = ''
    return c
