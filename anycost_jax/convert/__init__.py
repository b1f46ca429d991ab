"""Loading and saving models: original PyTorch checkpoints (read without torch) and our own.

``load_generator(path)`` / ``load_discriminator(path)`` accept
* an original ``.pt`` file (the full training checkpoint with ``g_ema`` / ``d``, or a bare state dict),
* one of our model directories (:mod:`anycost_jax.modeldir`),
* an ``http(s)://`` URL of either a ``.pt`` file, downloaded once into the cache
  (``$ANYCOST_CACHE`` or ``~/.cache/anycost_jax``), or
* (``load_generator``) a training work directory (:mod:`anycost_jax.workdir`): a stage's latest
  checkpoint (its EMA generator), a pipeline's final export. Every launcher loads through it.

``load_encoder(path)`` / ``load_attribute_predictor(path)`` do the same for the original's
ResNet-50 encoder and CelebA attribute predictor (``{'state_dict': ...}`` checkpoints, see
:mod:`anycost_jax.convert.resnet`); ``save_original_encoder`` writes an encoder back in that format.

``convert_models`` converts a generator and/or discriminator between the two formats (launch/convert.py).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

import jax
import numpy as np

from anycost_jax import download, elastic, modeldir, workdir
from anycost_jax.convert import img2img, original, resnet
from anycost_jax.convert.table import ConversionError
from anycost_jax.convert.torch_io import load_torch_file, save_torch_file
from anycost_jax.convert.resnet import encoder_to_state_dict
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.encoder import AttributePredictor, ResNet50Encoder
from anycost_jax.models.generator import MEAN_W_SAMPLES, Generator, mean_w

__all__ = ['load_generator', 'load_discriminator', 'save_model', 'load_model', 'save_original', 'resolve_path',
           'ConversionError', 'load_torch_file', 'save_torch_file', 'add_mean_style', 'load_encoder',
           'generator_from_config', 'load_attribute_predictor', 'encoder_to_state_dict', 'save_original_encoder',
           'KINDS', 'SUBDIRS',
           'parse_keys', 'describe', 'convert_models', 'convert_checkpoint', 'load_img2img_generator',
           'load_img2img_discriminator', 'save_img2img_generator', 'save_img2img_discriminator', 'load_vgg19',
           'load_drn']

# Our model-directory format lives in anycost_jax.modeldir; these names keep the callers of convert working.
save_model = modeldir.save
load_model = modeldir.load
MEAN_STYLE_SAMPLES = MEAN_W_SAMPLES
_OFFLINE_ADVICE = ('The original authors\' hosted weights are offline; download the .pt file yourself and pass '
                   'its local path')


# --------------------------------------------------------------------------- paths


def resolve_path(path: str) -> str:
    """A local path for ``path``, downloading URLs into the cache."""
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        return download.cached(path, advice=_OFFLINE_ADVICE)
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist; expected an original Anycost/StyleGAN2 .pt '
                                f'file (with key "g_ema" / "d" or a bare state dict), one of our model '
                                f'directories (with {modeldir.MODEL_FILE}), a training workdir (with '
                                f'{workdir.CONFIG_FILE} or {workdir.GENERATOR}/), or an http(s) URL')
    return path


def _load_dir(path: str, local: str, kind: str, classes):
    """``(module, variables)`` of our model directory ``local``, which must hold one of ``classes``."""
    try:
        module, variables = modeldir.load(local)
    except modeldir.ModelDirError as e:
        raise ConversionError(str(e)) from e
    if not isinstance(module, classes):
        raise ConversionError(f'{path!r} holds a {type(module).__name__}, not a {kind}')
    return module, variables


# --------------------------------------------------------------------------- original checkpoints


def _state_dict(obj: Any, key: str, path: str, probe: str) -> dict:
    """Picks the state dict under ``key`` from a training checkpoint, or takes a bare state dict."""
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
        return obj[key]
    if isinstance(obj, dict) and probe in obj:
        return obj
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ConversionError(f'{path}: expected an original checkpoint with key {key!r} or a bare state dict '
                          f'containing {probe!r}; found {keys}')


def add_mean_style(gen: Generator, variables: dict, n_sample: int = MEAN_STYLE_SAMPLES, seed: int = 0) -> dict:
    """Adds ``stats/w_avg`` (mean w over ``n_sample`` z) so truncation works without a style."""
    w_avg = mean_w(gen, variables, n_sample, jax.random.key(seed), use_stored=False)
    return {**variables, 'stats': {'w_avg': np.asarray(w_avg)}}


def _load(path: str, kind: str, key: str, probe: str, from_sd, classes):
    local = resolve_path(path)
    if os.path.isdir(local):
        return _load_dir(path, local, kind, classes)
    obj = load_torch_file(local)
    return from_sd(_state_dict(obj, key, path, probe))


def generator_from_config(config) -> Generator:
    """The generator a training config describes (its ``model`` fields; at the run's precision)."""
    m = config.model
    bf16 = config.get('bf16_from_res') or None  # config.json of older runs has no such field
    # A stage fits its n_res highest outputs; the export records them so launchers offer only those.
    n_res = config.get('n_res')  # a config without it says nothing: () is 'unknown'
    trained = elastic.resolutions_up_to(config.resolution)[::-1][:n_res] if n_res else ()
    return Generator(config.resolution, style_dim=m.style_dim, n_mlp=m.n_mlp, channel_multiplier=m.channel_multiplier,
                     channel_max=m.channel_max, bf16_from_res=bf16, trained_resolutions=tuple(trained))


def _stage_generator(local: str):
    """The EMA generator of a stage workdir's latest checkpoint, in float32 as the exports are."""
    gen = generator_from_config(workdir.read_config(local)).clone(bf16_from_res=None)
    saved, _, _ = workdir.restore_fields(local, ('ema_params', 'g_noise'))
    return gen, {'params': saved['ema_params'], 'noise': saved['g_noise']}


def load_generator(path: str, key: str = 'g_ema', mean_style: bool = True):
    """``(Generator, variables)`` from an original .pt, our directory, a training workdir, or a URL.

    ``key`` picks the generator in a training checkpoint (``g_ema``, or ``g``). With ``mean_style``
    an average w is stored under ``stats/w_avg`` (if absent) so ``truncation < 1`` works directly.
    """
    local = workdir.local_path(os.fspath(path))
    if workdir.is_stage(local):
        gen, variables = _stage_generator(local)
    else:
        if workdir.is_pipeline(local):  # its final export
            path = os.path.join(local, workdir.GENERATOR)
        gen, variables = _load(path, 'generator', key, 'style.1.weight', original.generator_from_state_dict,
                               (Generator,))
    if mean_style and 'stats' not in variables:
        variables = add_mean_style(gen, variables)
    return gen, variables


def load_discriminator(path: str, key: str = 'd'):
    """``(discriminator, variables)`` from an original .pt (``d``), our directory, or a URL."""
    return _load(path, 'discriminator', key, 'final_linear.1.weight', original.discriminator_from_state_dict,
                 (Discriminator, DiscriminatorMultiRes))


def save_original(path: str, generator=None, g_variables=None, discriminator=None, d_variables=None) -> None:
    """Writes an original-format ``.pt`` ({'g_ema': ..., 'd': ...}) readable by the PyTorch code."""
    out = {}
    if generator is not None:
        out['g_ema'] = original.generator_to_state_dict(generator, g_variables)
    if discriminator is not None:
        out['d'] = original.discriminator_to_state_dict(discriminator, d_variables)
    if not out:
        raise ValueError('save_original: pass a generator and/or a discriminator with their variables')
    save_torch_file(out, path)


# --------------------------------------------------------------------------- image-to-image (gan-compression)


def _img2img_local(path: str) -> str:
    path = os.fspath(path)
    if not path.startswith(('http://', 'https://')) and not os.path.exists(path):
        raise FileNotFoundError(f'{path!r} does not exist; expected a gan-compression .pth state dict (e.g. '
                                f'latest_net_G.pth), one of our model directories (with {modeldir.MODEL_FILE}), or '
                                'an http(s) URL')
    return resolve_path(path)


def _img2img_state_dict(path: str) -> dict:
    return img2img.state_dict_of(load_torch_file(_img2img_local(path)), path)


def load_img2img_generator(path: str, netG: Optional[str] = None, **hparams):
    """``(generator, variables)`` from a gan-compression generator ``.pth`` (e.g. ``latest_net_G.pth``)
    or one of our model directories (which needs no ``netG``).

    ``netG``: gan-compression's ``--netG`` name (:data:`anycost_jax.convert.img2img.NETGS`); the
    widths, channels, block count and norm come from the tensors. ``hparams``: what the weights do
    not fix (:func:`anycost_jax.convert.img2img.generator_hparams`): for ResNets ``dropout_rate``
    (default 0) and ``padding_type`` ('reflect' unless the blocks have no pad layers, then
    'zero'); for SPADE ``crop_size`` and ``num_upsampling_layers`` (required) and ``aspect_ratio``
    (default 1.0).
    """
    local = _img2img_local(path)
    if os.path.isdir(local):
        return _load_dir(path, local, 'image-to-image generator', img2img.GENERATOR_CLASSES)
    if netG is None:
        raise ValueError(f'{path}: a .pth state dict needs netG= (one of {list(img2img.NETGS)})')
    return img2img.generator_from_state_dict(_img2img_state_dict(path), netG, **hparams)


def load_img2img_discriminator(path: str, netD: str = 'n_layers'):
    """``(discriminator, variables)`` from a gan-compression discriminator ``.pth`` (``latest_net_D.pth``)
    or one of our model directories; ``netD``: 'n_layers' (PatchGAN) or 'multi_scale' (GauGAN's)."""
    local = _img2img_local(path)
    if os.path.isdir(local):
        return _load_dir(path, local, 'image-to-image discriminator', img2img.DISCRIMINATOR_CLASSES)
    return img2img.discriminator_from_state_dict(_img2img_state_dict(path), netD)


def load_vgg19(path: str):
    """``(VGG19, variables)`` (up to relu5_1, for the perceptual loss) from torchvision's ``vgg19`` ``.pth``
    (``vgg19-dcbb9e9d.pth``): a local file or a URL, read without torch."""
    return img2img.vgg19_from_state_dict(_img2img_state_dict(path))


def load_drn(path: str):
    """``(DRNSeg, variables)``: the Cityscapes mIoU's DRN-D-105 from ``drn-d-105_ms_cityscapes.pth`` (a local
    file; see :mod:`anycost_jax.convert.drn`), read without torch."""
    from anycost_jax.convert import drn
    return drn.load_drn(path)


def save_img2img_generator(path: str, generator, variables: dict) -> None:
    """Writes ``generator``'s state dict as gan-compression saves it (``torch.load`` + ``load_state_dict``)."""
    save_torch_file(img2img.generator_to_state_dict(generator, variables), path)


def save_img2img_discriminator(path: str, discriminator, variables: dict) -> None:
    save_torch_file(img2img.discriminator_to_state_dict(discriminator, variables), path)


# --------------------------------------------------------------------------- encoder and attribute predictor


def _load_resnet(path: str, kind: str, key: str, from_sd, cls):
    local = resolve_path(path)
    if os.path.isdir(local):
        return _load_dir(path, local, kind, cls)
    return from_sd(resnet.pick_state_dict(load_torch_file(local), key, path))


def load_encoder(path: str, key: str = 'state_dict'):
    """``(ResNet50Encoder, variables)`` from an original encoder .pt, our directory, or a URL.

    ``enc.apply(variables, images_256)`` gives w+ ``[N, n_style, style_dim]`` (images NHWC in [-1, 1]).
    """
    return _load_resnet(path, 'ResNet50Encoder', key, resnet.encoder_from_state_dict, ResNet50Encoder)


def load_attribute_predictor(path: str, key: str = 'state_dict'):
    """``(AttributePredictor, variables)`` from the original attribute_predictor.pt, our directory, or a URL."""
    return _load_resnet(path, 'AttributePredictor', key, resnet.predictor_from_state_dict, AttributePredictor)


def save_original_encoder(path: str, encoder: ResNet50Encoder, variables: dict) -> None:
    """Writes ``{'state_dict': ...}`` as the original's encoder checkpoints (``models.get_pretrained``)."""
    save_torch_file({'state_dict': encoder_to_state_dict(encoder, variables)}, path)


# --------------------------------------------------------------------------- format conversion

KINDS = ('generator', 'discriminator')
DEFAULT_KEYS = {'generator': 'g_ema', 'discriminator': 'd'}
# Of an output holding both: the same layout as a training workdir's final models.
SUBDIRS = {'generator': workdir.GENERATOR, 'discriminator': workdir.DISCRIMINATOR}


def parse_keys(what: str, key: Optional[str] = None) -> dict[str, str]:
    """``{kind: checkpoint key}`` of the models to convert.

    Args:
      what: 'generator', 'discriminator' or 'both'.
      key: None (the defaults g_ema / d), one key, or with 'both' "G" (the generator's) or "G,D".
    """
    if what not in KINDS + ('both',):
        raise ValueError(f'what={what!r} is not supported; expected one of {KINDS + ("both",)}')
    kinds = list(KINDS) if what == 'both' else [what]
    given = [k.strip() for k in key.split(',')] if key else []
    if len(given) > len(kinds) or any(not k for k in given):
        raise ValueError(f'key={key!r}: expected {"one key" if len(kinds) == 1 else "G or G,D"} for what={what!r}')
    return {kind: given[i] if i < len(given) else DEFAULT_KEYS[kind] for i, kind in enumerate(kinds)}


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def describe(module, variables) -> str:
    """One line: class, resolution, widths and parameter count of a generator or discriminator."""
    n_params = sum(int(np.size(a)) for a in _leaves(variables.get('params', {})))
    if isinstance(module, Generator):
        widths = f'widths {module.full_channels()}, style_dim {module.style_dim}, n_mlp {module.n_mlp}'
    else:
        ch = elastic.channels_per_resolution(module.channel_multiplier, module.channel_max)
        res = elastic.resolutions_up_to(module.resolution)[::-1]
        widths = f'widths {[ch[r] for r in res]} (resolution {res[0]} -> 4)'
        if isinstance(module, DiscriminatorMultiRes):
            widths += f', inputs {list(module.input_resolutions)}, modulate {module.modulate}'
    return f'{type(module).__name__} {module.resolution}x{module.resolution}: {widths}; {n_params:,} parameters'


def convert_models(inputs: dict[str, str], output: str, keys: Optional[dict[str, str]] = None,
                   log: Callable[[str], Any] = print) -> list[str]:
    """Loads a generator and/or discriminator and writes them in the other format.

    Args:
      inputs: ``{kind: original .pt, URL or our model directory}`` for the kinds to convert.
      output: a path ending in ``.pt`` (one original-format checkpoint), or our model directory
        (with both kinds: ``OUTPUT/generator`` and ``OUTPUT/discriminator``).
      keys: ``{kind: checkpoint key}`` (default g_ema / d), see :func:`parse_keys`.
      log: receives one line per model found and per file written.
    Returns:
      The paths written.
    """
    if not output or not inputs or not all(inputs.values()):
        raise ValueError(f'inputs={inputs!r} and output={output!r}: both are required')
    keys = {kind: (keys or {}).get(kind, DEFAULT_KEYS[kind]) for kind in inputs}
    to_pt = output.endswith('.pt')
    models = {}
    for kind, src in inputs.items():
        k = keys[kind]
        if kind == 'generator':
            # w_avg is only kept in our format; the original stores no such thing
            module, variables = load_generator(src, key=k, mean_style=not to_pt)
        else:
            module, variables = load_discriminator(src, key=k)
        is_dir = os.path.isdir(src)
        log(f'found {kind} in {src}{"" if is_dir else f" (key {k!r})"}: {describe(module, variables)}')
        models[kind] = (module, variables)
    if to_pt:
        g, d = models.get('generator', (None, None)), models.get('discriminator', (None, None))
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        save_original(output, generator=g[0], g_variables=g[1], discriminator=d[0], d_variables=d[1])
        log(f'wrote {" and ".join(keys)} to {output} (original format: '
            f'{", ".join(["g_ema"] * ("generator" in models) + ["d"] * ("discriminator" in models))})')
        return [output]
    written = []
    for kind, (module, variables) in models.items():
        dest = os.path.join(output, SUBDIRS[kind]) if len(models) > 1 else output
        written.append(modeldir.save(dest, module, variables))
        log(f'wrote {kind} to {written[-1]}')
    return written


def _input_for(path: str, kind: str) -> str:
    """``path`` itself, or its ``generator`` / ``discriminator`` subdirectory (a directory holding
    both: a ``what='both'`` output or a training workdir's final models)."""
    sub = os.path.join(path, SUBDIRS[kind])
    if os.path.isdir(path) and not modeldir.is_modeldir(path) and os.path.isdir(sub):
        return sub
    return path


def convert_checkpoint(input: str, output: str, what: str = 'generator', key: Optional[str] = None,
                       log: Callable[[str], Any] = print) -> list[str]:
    """Converts ``what`` (``generator``, ``discriminator`` or ``both``) from ``input`` to ``output``
    (:func:`convert_models`); ``key`` as :func:`parse_keys`. Returns the written paths."""
    if not input or not output:
        raise ValueError(f'input={input!r} and output={output!r}: both are required')
    keys = parse_keys(what, key)
    return convert_models({kind: _input_for(input, kind) for kind in keys}, output, keys, log=log)
