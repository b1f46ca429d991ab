"""GAN Slimming (Wang et al., ECCV 2020; VITA-Group/GAN-Slimming ``gs.py`` / ``finetune.py``) as a
family of :mod:`anycost_jax.train.loop`.

``config.method = 'slim'`` (``gs.py``): the student is the teacher's ResNet generator with affine
instance norms (:class:`anycost_jax.models.img2img.gs.GSGenerator`, starting as the teacher:
gamma 1 and beta 0 over a CycleGAN / pix2pix teacher, or a GAN Slimming dense model as it is),
8-bit fake-quantized with ``quant_bits=8`` (GS-8). Each step, as the original::

    G step:  beta * L_percep(G(x), T(x)) + MSE(D(G(x)), 1)
             gammas: SGD (lr_gamma 0.1, momentum 0.5), then gamma <- soft_threshold(gamma, rho * lr_gamma)
             the rest: Adam (lr 1e-5, weight decay 1e-3, (0.5, 0.999))
    D step:  0.5 * [MSE(D(T(x)), 1) + MSE(D(pool(G(x))), 0)]    Adam as the rest; D starts as the teacher's

with per-epoch cosine schedules (``CosineAnnealingLR(T_max=n_epochs)``; the proximal step reads the
epoch's gamma rate, as ``get_lr()`` did in the torch of its day). ``T(x)`` is the teacher's output:
read from the cache :func:`cache_teacher_outputs` writes (``config.teacher_cache``: the original
trains on such stored outputs, made by a script it does not ship), or computed online
(``teacher_cache`` empty). With a cache the training pairs are (input, stored output) with the
same crop and flip; a cache that does not match the dataset is refused.

The export is the trained dense network (``generator/``, gammas included), its extraction
(``extracted/``: the channels of non-zero gamma, :func:`anycost_jax.models.img2img.gs.extract`) and
``discriminator/``.

``config.method = 'finetune'`` (``finetune.py``): the extracted network of a ``slim`` run
(``config.pretrained``: its workdir; its D too) trains with the same objective, one Adam (``lr`` 1e-4, weight
decay 1e-3) and cosine schedule; every ``eval_every`` steps it is measured on ``test_split``
(``eval_metrics``: 'quality': LPIPS against the teacher, as :mod:`anycost_jax.eval.img2img_quality`;
'fid': FID) and the best so far is kept in ``WORKDIR/best/`` (the original: FID every 10 epochs
in the second half, ``best_FID_netG.pth``).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from anycost_jax import convert, modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.convert import gs as gs_convert
from anycost_jax.data import img2img_pipeline as pipe
from anycost_jax.losses import img2img as gan_losses
from anycost_jax.losses import slimming as losses
from anycost_jax.models import vgg as vgg_lib
from anycost_jax.models.img2img import gs as gs_lib
from anycost_jax.nn import quant as quant_lib
from anycost_jax.render import to_uint8
from anycost_jax.sharding import AXIS
from anycost_jax.train import gan_compression, img2img, loop
from anycost_jax.train import img2img_steps as steps_lib

log = logging.getLogger(__name__)

METHODS = ('slim', 'finetune')
RESUME_KEYS = ('method', 'dataset', 'resolution', 'teacher', 'teacher_netG', 'teacher_cache', 'discriminator',
               'pretrained', 'quant_bits', 'rho', 'beta', 'seed', 'batch_size', 'direction', 'preprocess', 'load_size')
EXTRACTED = 'extracted'  # WORKDIR/extracted: the slim run's dense sub-network
BEST = 'best'            # WORKDIR/best: the finetune run's best network so far
CACHE_KEYS = ('A', 'B')  # the cache's inputs and teacher outputs (uint8 NHWC)


def base_config(method: str = 'slim') -> ml_collections.ConfigDict:
    """``gs.py``'s defaults (``finetune.py``'s for 'finetune'): beta 20, rho 0 (set it), lr 1e-5 (1e-4),
    weight decay 1e-3, Adam (0.5, 0.999), gamma SGD 0.1 with momentum 0.5, 200 epochs, batch 8 (16),
    pool of 50; the data fields are the image-to-image family's (horse2zebra's 256 px images as they
    are: no resize, crop or flip)."""
    if method not in METHODS:
        raise ValueError(f'method={method!r}: the gan_slimming family has {METHODS}')
    c = img2img.base_config('cycle_gan')
    c.family, c.method, c.name = 'gan_slimming', method, f'gs_{method}'
    c.preprocess, c.load_size, c.no_flip = 'none', 256, True
    c.teacher, c.teacher_netG = '', 'resnet_9blocks'  # a workdir, model dir, gan-compression .pth, or GS .pth
    c.teacher_format = 'auto'          # 'gs': a GAN Slimming Generator .pth; 'auto': ours / gan-compression's
    c.teacher_cache = ''               # '' online teacher; else the .npz of cache_teacher_outputs
    c.discriminator = ''               # '': the teacher run's discriminator/ (a GS netD .pth also loads)
    c.pretrained = ''                  # finetune: the slim run's workdir (its extracted/ network)
    c.quant_bits = 32                  # 32: GS-32 (float); 8: GS-8
    c.rho, c.beta = 0., 20.
    c.lr, c.weight_decay, c.beta1, c.beta2 = (1e-5 if method == 'slim' else 1e-4), 1e-3, 0.5, 0.999
    c.lr_gamma, c.momentum = 0.1, 0.5
    c.n_epochs, c.n_epochs_decay = 200, 0
    c.batch_size = 8 if method == 'slim' else 16
    c.pool_size = 50
    c.eval_metrics = 'quality'         # finetune: what picks the best ('quality': LPIPS to the teacher; 'fid')
    return c


def data_config(config) -> ml_collections.ConfigDict:
    return gan_compression.data_config(config)


def paired(config) -> bool:
    return gan_compression.paired(config)


# --------------------------------------------------------------------------- networks


def load_teacher(config):
    """``(GSGenerator, variables)`` computing the teacher: a GAN Slimming dense model as it is, or a ResNet
    generator (ours, gan-compression's) carried over with gamma 1 and beta 0."""
    if not config.teacher:
        raise ValueError('config.teacher is empty: pass the trained teacher (a training workdir, a model directory, '
                         'a gan-compression .pth with config.teacher_netG, or a GAN Slimming netG_A2B_epoch_199.pth '
                         'with config.teacher_format=gs), e.g. --config.teacher=runs/shapes_cyclegan')
    if config.teacher_format == 'gs':
        gen, v = gs_convert.load_generator(config.teacher, zero_block='identity')
        if gen.widths is not None:
            raise ValueError(f'config.teacher={config.teacher!r} is an extracted (pruned) network; the teacher is dense')
        return gen, v
    if config.teacher_format != 'auto':
        raise ValueError(f"config.teacher_format={config.teacher_format!r}: expected 'auto' or 'gs'")
    gen, v = gan_compression.load_teacher(config)
    if gen.mobile or gen.norm != 'instance' or gen.padding_type != 'reflect':
        raise ValueError(f'config.teacher={config.teacher!r} is a {"MobileNet-" if gen.mobile else ""}ResNet with '
                         f'norm={gen.norm!r}, padding={gen.padding_type!r}; GAN Slimming prunes the instance-norm, '
                         'reflect-padded ResNet generator (resnet_9blocks / resnet_6blocks)')
    student = gs_lib.GSGenerator(gen.input_nc, gen.output_nc, gen.ngf, gen.n_blocks)
    return student, {'params': gs_lib.from_resnet(student, v['params'])}


def teacher_apply(teacher):
    return jax.jit(lambda v, x: teacher.apply(v, x))


def load_student(config, teacher):
    """slim: the teacher itself (``quant_bits`` set); finetune: the slim run's extracted network."""
    gen, v = teacher
    bits = quant_lib.check_bits(config.quant_bits)
    if config.method == 'slim':
        return gen.clone(quant_bits=bits), v
    if not config.pretrained:
        raise ValueError('config.pretrained is empty: pass the slim run\'s workdir (its extracted/ network) or a GAN '
                         'Slimming extracted epoch199_netG.pth')
    path = config.pretrained
    if os.path.isdir(os.path.join(path, EXTRACTED)):
        sub, sv = modeldir.load(os.path.join(path, EXTRACTED))
    elif path.endswith('.pth'):
        sub, sv = gs_convert.load_generator(path)
    else:
        sub, sv = modeldir.load(path)
    if not isinstance(sub, gs_lib.GSGenerator):
        raise ValueError(f'config.pretrained={path!r} holds a {type(sub).__name__}, not a GAN Slimming network')
    if (sub.ngf, sub.n_blocks) != (gen.ngf, gen.n_blocks):
        raise ValueError(f'config.pretrained has ngf {sub.ngf} and {sub.n_blocks} blocks, the teacher {gen.ngf} and '
                         f'{gen.n_blocks}: a student is pruned from its own teacher')
    gs_lib.check_gs_widths(sub.full_widths, gen.full_widths)  # never wider than the teacher
    return sub.clone(quant_bits=bits), sv


def load_discriminator(config):
    """``config.discriminator`` (a GS ``netD`` .pth, a gan-compression one, a model dir or workdir); empty:
    for finetune the slim run's trained D (``finetune.py`` takes its ``latest.pth['netD']``), else the teacher
    run's."""
    path = config.discriminator
    slim_d = os.path.join(config.pretrained, workdir_lib.DISCRIMINATOR) if config.pretrained else ''
    if not path and config.method == 'finetune' and os.path.isdir(slim_d):
        return convert.load_img2img_discriminator(slim_d)
    if path.endswith('.pth'):
        try:
            return gs_convert.load_discriminator(path)
        except convert.ConversionError:
            return convert.load_img2img_discriminator(path)
    return gan_compression.load_discriminator(config)


# --------------------------------------------------------------------------- optimizers


def cosine(lr: float, steps_per_epoch: int, n_epochs: int):
    """``CosineAnnealingLR(T_max=n_epochs)`` stepped once per epoch: ``lr (1 + cos(pi e / n)) / 2``."""
    def schedule(count):
        e = jnp.minimum(count // steps_per_epoch, n_epochs)
        return lr * 0.5 * (1 + jnp.cos(jnp.pi * e / n_epochs))
    return schedule


def adam_wd(lr, weight_decay: float, beta1: float = 0.5, beta2: float = 0.999) -> optax.GradientTransformation:
    """torch's ``Adam(weight_decay=wd)``: the decay is added to the gradient (L2, not AdamW)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(beta1, beta2, eps=1e-8),
                       optax.scale_by_learning_rate(lr))


def generator_tx(params, lr, lr_gamma, weight_decay, momentum, beta1=0.5, beta2=0.999):
    """The gammas on SGD with momentum (``torch.optim.SGD``: no dampening), the rest on :func:`adam_wd`."""
    labels = jax.tree.map(lambda m: 'gamma' if m else 'rest', gs_lib.gamma_mask(params))
    return optax.multi_transform({'gamma': optax.sgd(lr_gamma, momentum), 'rest': adam_wd(lr, weight_decay, beta1,
                                                                                         beta2)}, labels)


# --------------------------------------------------------------------------- the step


@dataclasses.dataclass(frozen=True)
class GSConfig:
    beta: float = 20.
    rho: float = 0.
    slim: bool = True       # gammas on their own optimizer with the proximal step
    online: bool = False    # the teacher runs in the step (else batch['B'] holds its outputs)


class GSSteps(steps_lib._Steps):
    """One GAN Slimming iteration (``gs.py``'s loop body; ``finetune.py``'s without gammas). Extra
    arguments: the VGG16 variables and the teacher's (``{}`` with a cache)."""
    n_extra_args = 2

    def __init__(self, mesh, gen, disc, teacher, cfg: GSConfig, g_tx, d_tx, gamma_lr=None):
        super().__init__(mesh, gen, disc, cfg, g_tx, d_tx)
        self.teacher, self.gamma_lr = teacher, gamma_lr

    def body(self, state, batch, vgg_vars, teacher_vars):
        cfg, x = self.cfg, batch['A']
        target = jax.lax.stop_gradient(self.teacher.apply(teacher_vars, x)) if cfg.online else batch['B']
        t_feats = jax.lax.stop_gradient(losses.vgg_features(vgg_vars, target))

        def g_loss(params):
            fake = self.gen.apply({'params': params}, x)
            percep, content, style = losses.perceptual_loss(losses.vgg_features(vgg_vars, fake), t_feats)
            gan = losses.mse_to(self.disc.apply({'params': state.d_params, **state.d_stats}, fake), 1.)
            return cfg.beta * percep + gan, (fake, {'G_percep': percep, 'G_content': content,
                                                    'G_style': style * losses.STYLE_WEIGHT, 'G_gan': gan})

        (loss, (fake, g_metrics)), grads = jax.value_and_grad(g_loss, has_aux=True)(sharding.varying(state.g_params))
        g_params, g_opt_state = steps_lib._update(self.g_tx, grads, state.g_opt_state, state.g_params)
        if cfg.slim:  # the proximal step of rho * |gamma|_1 at this epoch's gamma rate
            g_params = gs_lib.prox_gammas(g_params, cfg.rho * self.gamma_lr(state.step))
        k_pool = jax.random.fold_in(jax.random.fold_in(state.rng, steps_lib.POOL_STREAM), state.step)
        pooled, pool = steps_lib._global_pool_query(state.pools, jax.lax.stop_gradient(fake), k_pool)

        def d_loss(params):
            v = {'params': params, **state.d_stats}
            return losses.discriminator_loss(self.disc.apply(v, target), self.disc.apply(v, pooled))

        d_value, d_grads = jax.value_and_grad(d_loss)(sharding.varying(state.d_params))
        d_params, d_opt_state = steps_lib._update(self.d_tx, d_grads, state.d_opt_state, state.d_params)
        metrics = {**g_metrics, 'G': loss, 'D': d_value}
        if cfg.slim:
            metrics['channels'] = sum(jnp.sum(g != 0) for g, m in zip(jax.tree.leaves(g_params),
                                                                     jax.tree.leaves(gs_lib.gamma_mask(g_params))) if m)
        state = state.replace(step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, d_params=d_params,
                              d_opt_state=d_opt_state, pools=pool)
        return state, jax.lax.pmean(metrics, AXIS)


# --------------------------------------------------------------------------- the teacher cache


def _fingerprint(inputs: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()[:16]


def _train_inputs(config, indices=None) -> tuple[np.ndarray, int]:
    """``(inputs, count)``: the training inputs (domain A of unpaired data, or the paired inputs) at
    ``indices`` (default all), in index order, preprocessed as at evaluation (the whole image at the
    resolution, no crop offset, no flip), uint8 NHWC; ``count`` the split's size."""
    from PIL import Image
    dcfg = data_config(config)
    source = img2img.source_of(dcfg, dcfg.train_split)
    if isinstance(source, pipe.UnpairedSource):
        side = source.a if config.direction == 'AtoB' else source.b
        n, key, src = len(side), 'image', side
    else:
        n, key, src = len(source), 'A' if config.direction == 'AtoB' else 'B', source
    idx = np.arange(n) if indices is None else np.asarray(indices)
    opt = img2img.preprocess_of(dcfg, train=False)
    out = []
    for img in src.get(idx)[key]:
        img = Image.fromarray(np.asarray(img))
        out.append(np.asarray(pipe.transform(img, opt, pipe.draw_params(opt, img.size, (0., 0., 0.)))))
    return np.stack(out), n


def cache_teacher_outputs(config, output: str, batch_size: int = 16) -> str:
    """Computes the teacher's outputs over the whole training set once and stores them with their inputs
    (uint8, as the original's stored images) in ``output`` (.npz), with what identifies the data
    (dataset, split, resolution, count, a hash of the inputs). Returns ``output``."""
    teacher, t_vars = load_teacher(config)
    inputs, n = _train_inputs(config)
    apply = teacher_apply(teacher)
    outs = [to_uint8(apply(t_vars, pipe.photo_to_float(inputs[i:i + batch_size])))
            for i in range(0, n, batch_size)]
    meta = {'dataset': config.dataset, 'split': config.train_split, 'resolution': config.resolution,
            'direction': config.direction, 'count': int(n), 'inputs_sha256': _fingerprint(inputs),
            'teacher': config.teacher}
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    np.savez(output, A=inputs, B=np.concatenate(outs), meta=json.dumps(meta))
    log.info('cached %d teacher outputs of %s in %s', n, config.teacher, output)
    return output


def load_teacher_cache(config) -> pipe.Img2ImgArraySource:
    """The cache as paired examples (A: inputs, B: teacher outputs), checked against the dataset: its
    dataset, split, resolution and example count, and the inputs themselves (the first 8 examples
    preprocessed again must equal the stored ones)."""
    path = config.teacher_cache
    remake = (f'remake it: python launch/gs_cache.py --config=<this config> --output={path} (with this '
              'dataset, split, resolution and direction)')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config.teacher_cache={path!r} does not exist; {remake}')
    with np.load(path) as f:
        missing = [k for k in CACHE_KEYS + ('meta',) if k not in f]
        if missing:
            raise ValueError(f'{path} is not a teacher-output cache (lacks {missing}); {remake}')
        a, b, meta = f['A'], f['B'], json.loads(str(f['meta']))
    want = {'dataset': config.dataset, 'split': config.train_split, 'resolution': config.resolution,
            'direction': config.direction}
    bad = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
    if bad:
        raise ValueError(f'{path} does not match the dataset: (cache, config) differ in {bad}; {remake}')
    k = min(8, len(a))
    inputs, n = _train_inputs(config, np.arange(k))
    if n != len(a) or n != meta['count'] or len(b) != len(a):
        raise ValueError(f'{path} holds {len(a)} examples, the training split {n}: it does not match the dataset; '
                         f'{remake}')
    if not np.array_equal(inputs, a[:k]):
        raise ValueError(f'{path}: its stored inputs differ from the training split\'s (the data changed since it '
                         f'was made); {remake}')
    return pipe.Img2ImgArraySource(A=a, B=b)


# --------------------------------------------------------------------------- the stage


def check(config, workdir: str) -> None:
    del workdir
    if config.method not in METHODS:
        raise ValueError(f'config.method={config.method!r}: the gan_slimming family has {METHODS}')
    gs_lib.check_rho(config.rho)
    quant_lib.check_bits(config.quant_bits)
    img2img.procedural_task(data_config(config))
    teacher = load_teacher(config)
    load_student(config, teacher)
    if config.teacher_cache:
        load_teacher_cache(config)
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} must be a multiple of the {jax.device_count()} devices')
    gan_compression.eval_metrics(config)


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    dcfg = data_config(config)
    teacher, t_vars = load_teacher(config)
    student, s_vars = load_student(config, (teacher, t_vars))
    disc, d_vars = load_discriminator(config)
    online = not config.teacher_cache
    if online:
        source = img2img.source_of(dcfg, dcfg.train_split)
    else:
        source = load_teacher_cache(config)
    n_train = len(source.a) if isinstance(source, pipe.UnpairedSource) else len(source)
    spe = max(1, n_train // config.batch_size)
    slim = config.method == 'slim'
    lr, lr_gamma = cosine(config.lr, spe, config.n_epochs), cosine(config.lr_gamma, spe, config.n_epochs)
    g_tx = generator_tx(s_vars['params'], lr, lr_gamma, config.weight_decay, config.momentum, config.beta1,
                        config.beta2) if slim else adam_wd(lr, config.weight_decay, config.beta1, config.beta2)
    d_tx = adam_wd(lr, config.weight_decay, config.beta1, config.beta2)
    cfg = GSConfig(config.beta, gs_lib.check_rho(config.rho), slim, online)
    steps = GSSteps(mesh, student, disc, teacher, cfg, g_tx, d_tx, gamma_lr=lr_gamma)
    rng = jax.random.key(config.seed)
    image_shape = (config.resolution, config.resolution, student.output_nc)

    def init_state(fresh: bool):
        del fresh
        pools = gan_losses.pool_init(config.pool_size, image_shape)
        return steps.replicate(steps_lib.create_state(rng, s_vars, d_vars, g_tx, d_tx, pools=pools))

    extra = (steps.replicate(vgg_lib.vgg16_variables()), steps.replicate(t_vars if online else {}))
    test = img2img.test_batch(dcfg)
    teacher_out = to_uint8(teacher_apply(teacher)(t_vars, test['A']))

    def samples(state):
        """Rows of input | student | teacher on held-out examples."""
        out = to_uint8(teacher_apply(student)(student_variables(state), test['A']))
        cols = [to_uint8(test['A']), out, teacher_out]
        return np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)

    def data(start: int):
        if online:
            return img2img.make_stream(dcfg, dcfg.train_split, start, config.batch_size, source=source)
        c = dcfg.copy_and_resolve_references()
        c.direction = 'AtoB'  # the cache's A is the input whatever the direction
        return pipe.PairedStream(source, direction='AtoB', global_batch=config.batch_size, seed=config.seed,
                                 start_step=start, preprocess=img2img.preprocess_of(c, True),
                                 name=f'teacher cache {config.teacher_cache}')

    return loop.Stage(
        name=config.name, init_state=init_state, programs=[loop.Program('step', steps.program(), args=extra)],
        data=data, shard_batch=steps.shard_batch, checked_trees=lambda s: (s.g_params, s.d_params),
        batch_size=config.batch_size, meta={'config': config.to_dict()}, samples=samples,
        export=functools.partial(export, config, workdir=workdir, student=student, disc=disc),
        evaluate=functools.partial(evaluate, config, workdir=workdir, student=student,
                                   teacher=(teacher, t_vars)) if config.eval_every else None)


def student_variables(state) -> dict:
    return sharding.local_copy({'params': state.g_params})


def evaluate(config, state, step: int, writer, workdir: str, student, teacher) -> dict:
    """The student on ``test_split``: LPIPS / L1 / PSNR to the teacher (and the real targets, paired data)
    and / or FID; the best so far (lowest teacher LPIPS, or FID) is kept in ``WORKDIR/best/``."""
    from anycost_jax.eval import img2img_quality as quality_lib
    metrics, results = gan_compression.eval_metrics(config), {}
    v = student_variables(state)
    dcfg = data_config(config)
    if 'quality' in metrics:
        batches = gan_compression.heldout_batches(config, config.test_split, config.eval_batch_size,
                                                  (teacher[0], teacher[1]))
        scores = quality_lib.quality(lambda x: teacher_apply(student)(v, x), batches)
        results.update({f'eval/{k}': s for k, s in scores.items()})
    if 'fid' in metrics:
        stats = config.fid_stats or os.path.join(workdir, 'fid_stats', f"{config.dataset.replace('/', '_')}_"
                                                 f"{config.test_split}_AtoB_{config.resolution}.npz")
        results['eval/fid'] = img2img.fid(dcfg, student, v, img2img.feature_extractor(config),
                                          batch_size=config.eval_batch_size,
                                          stats_path=stats.replace('{direction}', 'AtoB'))
    key = 'eval/fid' if 'fid' in metrics else 'eval/teacher/lpips'
    best_file = os.path.join(workdir, BEST + '.json')
    best = json.load(open(best_file)) if os.path.isfile(best_file) else None
    if best is None or results[key] < best['value']:
        modeldir.save(os.path.join(workdir, BEST), student, v)
        if jax.process_index() == 0:
            with open(best_file, 'w') as f:
                json.dump({'step': step, 'measure': key, 'value': results[key]}, f)
        log.info('step %d: new best %s %.5f, saved to %s', step, key, results[key], os.path.join(workdir, BEST))
    if writer is not None:
        writer.write_scalars(step, results)
    return results


def export(config, state, workdir: str, student=None, disc=None) -> None:
    """``generator/`` (the trained network), ``discriminator/``; slim: ``extracted/`` (the dense sub-network of
    non-zero gammas; ``extracted.json``: its widths, the original's ``dim_lst``, MACs)."""
    from anycost_jax import macs as macs_lib
    if student is None or disc is None:
        teacher = load_teacher(config)
        student = load_student(config, teacher)[0] if student is None else student
        disc = load_discriminator(config)[0] if disc is None else disc
    v = student_variables(state)
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), student, v)
    modeldir.save(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc, sharding.local_copy(
        {'params': state.d_params, **state.d_stats}))
    if config.method != 'slim':
        return
    sub, sv = gs_lib.extract(student, v)
    modeldir.save(os.path.join(workdir, EXTRACTED), sub, sv)
    x = jax.ShapeDtypeStruct((1, config.resolution, config.resolution, student.input_nc), jnp.float32)
    info = {'widths': list(sub.widths), 'dim_lst': gs_lib.dim_lst(sub.widths),
            'macs': macs_lib.count_macs(sub, x), 'dense_macs': macs_lib.count_macs(student, x),
            'macs_2^30': macs_lib.binary_giga(macs_lib.count_macs(sub, x, convention='gan-slimming'))}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, EXTRACTED + '.json'), 'w') as f:
            json.dump(info, f, indent=1)
    log.info('extracted %s: widths %s, %d MACs (dense %d)', workdir, sub.widths, info['macs'], info['dense_macs'])
