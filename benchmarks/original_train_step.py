"""The original's training iteration for one stage, timed per program; runs in the torch interpreter.

Started by ``benchmarks/train_step.py --original_repo`` through :mod:`benchmarks.torch_original`
with one JSON spec (the stage, the model and step settings of our side, warm-up / repeats /
threads, ``repo`` and ``out``). It must not import jax or anycost_jax.

It rebuilds what one iteration of the original's ``tools/train_gan.py`` does, with the original's
own modules (that script itself needs horovod, a data set, an Inception network and a GPU, so it
is not imported): ``Generator``, ``Discriminator`` / ``DiscriminatorMultiRes``,
``sample_random_sub_channel`` / ``reset_generator``, the losses of ``utils/losses.py``, the
helpers of ``utils/train_utils.py`` (``get_mixing_z``, ``get_g_arch``, ``get_teacher_multi_res``,
``adaptive_downsample256``, ``accumulate``, ``requires_grad``), ``torch.optim.Adam`` with
betas (0, 0.99). The four programs, each a function here:

* ``d_step``: G renders under ``no_grad`` (a sampled uniform width in the anycost stage), D's
  logistic loss on the ``n_sampled_res`` drawn resolutions (one in stylegan2), backward, Adam;
* ``g_step``: G renders with grad, the non-saturating loss on the drawn resolutions, the frozen
  teacher on the same z / noise / mixing index and MSE at every trained resolution (+ LPIPS-VGG
  when asked), backward, Adam, then the EMA update (``accumulate``), which closes the iteration;
* ``d_reg_step``: lazy R1 on one randomly chosen resolution (``d_r1_loss``), backward, Adam;
* ``g_reg_step`` (stylegan2 only): path length regularization on batch / ``pl_batch_shrink``.

LPIPS uses ``lpips.LPIPS(net='vgg', pnet_rand=True)``: randomly initialised VGG features (the
pretrained ones would be downloaded) and the linear heads shipped in the package. The weights
of every network are the original's random initialisation: the cost does not depend on them.

Timing is that of our side: the first call of each program untimed, ``warmup`` untimed
iterations (d_step, g_step), ``repeats`` timed ones; then each regularization program alone,
``warmup`` + ``repeats`` calls. Every call is synchronous (CPU). The raw milliseconds are written.
"""
import contextlib
import io
import json
import os
import random
import resource
import sys
import time


def build(a):
    """The programs of one stage: {'d_step': fn, ...}, each fn() -> None; plus the setup seconds."""
    import torch
    from torch import nn, optim
    with contextlib.redirect_stdout(io.StringIO()):  # models.ops prints which ops it uses
        from models.anycost_gan import Discriminator, DiscriminatorMultiRes, Generator
    from models.dynamic_channel import reset_generator, sample_random_sub_channel
    from utils.losses import d_logistic_loss, d_r1_loss, g_nonsaturating_loss, g_path_regularize
    from utils.train_utils import (accumulate, adaptive_downsample256, get_g_arch, get_mixing_z,
                                   get_teacher_multi_res, requires_grad)

    stage, res, n_res, batch = a['stage'], a['resolution'], a['n_res'], a['batch']
    dynamic = a['channel_mode'] is not None
    conditioned = a['conditioned_d']
    dim = a['style_dim']

    def make_g():
        return Generator(res, dim, a['n_mlp'], channel_multiplier=a['channel_multiplier'],
                         channel_max=a['channel_max'])

    generator, g_ema = make_g(), make_g()
    g_ema.eval()
    accumulate(g_ema, generator, 0)
    if stage == 'stylegan2':
        discriminator = Discriminator(res, channel_multiplier=a['channel_multiplier'], channel_max=a['channel_max'])
    else:
        discriminator = DiscriminatorMultiRes(res, channel_multiplier=a['channel_multiplier'],
                                              channel_max=a['channel_max'], n_res=n_res, modulate=conditioned)
    teacher = percept = None
    if a['distill_weight'] > 0:
        teacher = make_g()
        teacher.eval()
        if a['lpips']:
            import lpips
            percept = lpips.LPIPS(net='vgg', pnet_rand=True, verbose=False)
    g_optim = optim.Adam(generator.parameters(), lr=a['lr'], betas=(0., 0.99))
    d_optim = optim.Adam(discriminator.parameters(), lr=a['lr'], betas=(0., 0.99))

    # "Real" images: lowest resolution first, as the original's MultiResize yields them.
    x = torch.rand(batch, 3, res, res) * 2 - 1
    reals = [nn.functional.interpolate(x, size=res >> i, mode='bilinear', align_corners=False)
             for i in reversed(range(n_res))] if n_res > 1 else x
    all_resolutions = [res >> i for i in range(n_res)]
    ch = dict(min_channel=a['min_channel'], divided_by=a['divided_by'], mode=a['channel_mode'])
    state = {'mean_path_length': 0., 'g_arch': None}

    def arch(ratios):
        return get_g_arch(ratios, device='cpu') if conditioned else None

    def d_step():
        requires_grad(generator, False)
        requires_grad(discriminator, True)
        z = get_mixing_z(batch, dim, a['mixing_prob'], 'cpu')
        with torch.no_grad():
            ratios = sample_random_sub_channel(generator, **ch) if dynamic else None
            fake_img, all_rgbs = generator(z, return_rgbs=True)
            all_rgbs = all_rgbs[-n_res:]
            reset_generator(generator)
        if n_res > 1:
            sampled = random.sample(all_resolutions, a['n_sampled_res'])
            g_arch = arch(ratios)
            real_arch = arch(sample_random_sub_channel(generator, set_channels=False, **ch)) if conditioned else None
            d_loss = 0.
            for ri, fi in zip(reals, all_rgbs):
                if ri.shape[-1] in sampled:
                    real_pred, fake_pred = discriminator(ri, real_arch), discriminator(fi, g_arch)
                    d_loss = d_loss + d_logistic_loss(real_pred, fake_pred)
            state['g_arch'] = g_arch
        else:
            fake_pred, real_pred = discriminator(fake_img), discriminator(reals)
            d_loss = d_logistic_loss(real_pred, fake_pred)
        # The accuracies the original logs every step (here without horovod's all-reduce).
        ((real_pred > 0).sum() / real_pred.shape[0], (fake_pred < 0).sum() / real_pred.shape[0])
        discriminator.zero_grad()
        d_loss.backward()
        d_optim.step()

    def d_reg_step():
        requires_grad(discriminator, True)  # as right after d_step, where the original runs it
        # A fresh leaf: the original sets requires_grad on that iteration's (then discarded) batch.
        reg_img = (random.choice(reals) if n_res > 1 else reals).detach()
        reg_img.requires_grad = True
        real_pred = discriminator(reg_img, state['g_arch']) if conditioned else discriminator(reg_img)
        r1_loss = d_r1_loss(real_pred, reg_img)
        discriminator.zero_grad()
        (a['r1_gamma'] / 2 * r1_loss * a['d_reg_every'] + 0 * real_pred[0]).backward()
        d_optim.step()

    def g_step():
        requires_grad(generator, True)
        requires_grad(discriminator, False)
        z = get_mixing_z(batch, dim, a['mixing_prob'], 'cpu')
        noises = generator.make_noise()
        inject_index = None if z.shape[1] == 1 else random.randint(1, generator.n_style - 1)
        ratios = sample_random_sub_channel(generator, **ch) if dynamic else None
        fake_img, all_rgbs = generator(z, noise=noises, inject_index=inject_index, return_rgbs=True)
        all_rgbs = all_rgbs[-n_res:]
        reset_generator(generator)
        if n_res > 1:
            g_arch = arch(ratios)
            g_loss = sum(g_nonsaturating_loss(discriminator(r, g_arch))
                         for r in random.sample(all_rgbs, a['n_sampled_res']))
        else:
            g_loss = g_nonsaturating_loss(discriminator(fake_img))
        if teacher is not None:
            with torch.no_grad():
                teacher_out, _ = teacher(z, noise=noises, inject_index=inject_index)
            teacher_rgbs = get_teacher_multi_res(teacher_out, n_res)
            distill = sum(nn.MSELoss()(s, t) for s, t in zip(all_rgbs, teacher_rgbs))
            if percept is not None:
                distill = distill + sum(percept(adaptive_downsample256(s), adaptive_downsample256(t)).mean()
                                        for s, t in zip(all_rgbs, teacher_rgbs))
            g_loss = g_loss + distill * a['distill_weight']
        generator.zero_grad()
        g_loss.backward()
        g_optim.step()
        accumulate(g_ema, generator, a['ema_beta'])

    def g_reg_step():
        requires_grad(generator, True)
        z = get_mixing_z(max(1, batch // a['pl_batch_shrink']), dim, a['mixing_prob'], 'cpu')
        fake_img, latents = generator(z, return_styles=True)
        path_loss, state['mean_path_length'], _ = g_path_regularize(fake_img, latents, state['mean_path_length'],
                                                                    decay=a['pl_decay'])
        generator.zero_grad()
        (a['pl_weight'] * a['g_reg_every'] * path_loss + 0 * fake_img[0, 0, 0, 0]).backward()
        g_optim.step()

    progs = {'d_step': d_step, 'g_step': g_step, 'd_reg_step': d_reg_step}
    if a['pl_weight'] > 0:
        progs['g_reg_step'] = g_reg_step
    return progs


def main():
    a = json.loads(sys.argv[1])
    os.environ['FORCE_NATIVE'] = '1'
    sys.path.insert(0, a['repo'])
    import torch
    torch.set_num_threads(a['threads'])
    random.seed(a['seed'])
    torch.manual_seed(a['seed'])
    t = time.perf_counter()
    progs = build(a)
    setup_s = time.perf_counter() - t

    def call(name):
        t0 = time.perf_counter()
        progs[name]()
        return (time.perf_counter() - t0) * 1e3

    first_s = {n: call(n) / 1e3 for n in progs}  # mirrors our compiling first calls
    for _ in range(a['warmup']):
        call('d_step'), call('g_step')
    d_runs, g_runs = [], []
    for _ in range(a['repeats']):
        d_runs.append(call('d_step'))
        g_runs.append(call('g_step'))
    reg = {}
    for name in ('d_reg_step', 'g_reg_step'):
        if name in progs:
            for _ in range(a['warmup']):
                call(name)
            reg[name] = [call(name) for _ in range(a['repeats'])]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == 'darwin' else 2 ** 10)
    with open(a['out'], 'w') as f:
        json.dump(dict(d_runs=d_runs, g_runs=g_runs, r1_runs=reg.get('d_reg_step'), pl_runs=reg.get('g_reg_step'),
                       setup_s=setup_s, first_call_s=first_s, peak_mib=rss, torch=torch.__version__,
                       threads=torch.get_num_threads()), f)


if __name__ == '__main__':
    main()
