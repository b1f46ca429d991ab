"""Image-to-image networks (pix2pix, CycleGAN, GauGAN) and their compressed forms."""
from anycost_jax.models.img2img.discriminators import NLayerDiscriminator  # noqa: F401
from anycost_jax.models.img2img.resnet import MobileResnetGenerator, ResnetGenerator  # noqa: F401
from anycost_jax.models.img2img.spade import (  # noqa: F401
    MobileSPADEGenerator, MultiscaleDiscriminator, SPADEGenerator, instance_edges, semantic_input)
from anycost_jax.models.img2img.unet import UnetGenerator  # noqa: F401
