r"""LSUN Car at 512, config-f: the paper's car models (Lin et al., CVPR 2021, Table 2).

Same stages as ``configs/ffhq.py`` (``stylegan2``, ``multires``, ``anycost``, ``anycost-flexible``,
and ``pipeline`` for stages 0 -> 1 -> 2 in one run) at resolution 512, 4 resolutions (512..64)
from stage 1. The data is the TFDS catalog's ``lsun/car``, which this code never downloads:
prepare it once with ``tfds build lsun/car --file_format=array_record`` (5.5M images, read by
index, so array_record is required) on a machine with network access. Non-square images are
center-cropped; the original instead stored them letterboxed, so FIDs are comparable only
within this codebase.
Expected: the released anycost-car-config-f quality (FID ~2.4 at full cost in the paper).

    python launch/train.py --config=configs/lsun_car.py:anycost --workdir=runs/car-s2 \
        --config.tune_from=runs/car-s1 --config.teacher=runs/car-s1
"""
from configs import ffhq


def get_config(arg: str = 'anycost'):
    c = ffhq.get_config(arg)
    c.name = 'lsun_car' if arg == 'pipeline' else f'lsun_car-{arg}'
    c.resolution = 512
    c.dataset = 'lsun/car'
    c.checkpoint_every = 5000
    return c
