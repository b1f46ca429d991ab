"""The embedded image-to-image data: deterministic, and each input agrees with its target."""
import numpy as np
import pytest

from anycost_jax.data import procedural
from anycost_jax.data import procedural_img2img as p2p


def _erode(mask):
    """``mask`` without its boundary pixels (4-neighbourhood): away from antialiased edges."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def test_examples_are_pure_functions_of_seed_index_and_size():
    for task in p2p.TASKS:
        a, b = p2p.example(task, 5, 32), p2p.example(task, 5, 32)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        other = p2p.example(task, 5, 32, seed=1)
        assert any(not np.array_equal(a[k], other[k]) for k in a)


def test_label_map_names_the_color_of_each_shape_interior():
    for i in range(20):
        labels, image = p2p.label_map(i, 64), p2p.example('labels2image', i, 64)['target']
        assert labels.max() < p2p.N_CLASSES
        shapes = labels > 0
        # away from edges (where antialiasing mixes colors) every shape pixel has its class's color
        inner = _erode(shapes & (p2p.edges(labels)[..., 0] == 255))
        colors = procedural.COLORS[(labels[inner].astype(int) - 1) % 4]
        assert np.abs(image[inner].astype(float) - colors).max() <= 1
        # and the background is the fixed gradient, whatever the scene (the target is a function of
        # the input), never a shape color
        bg = _erode(~shapes)
        for c in procedural.COLORS:
            assert not np.any(np.all(np.abs(image[bg].astype(float) - c) < 1, axis=-1))
        empty = procedural.render_example(i, 64, background=p2p.PAIRED_BACKGROUND)
        np.testing.assert_array_equal(image[bg], empty[bg])
        assert image[2, 2].sum() < image[61, 61].sum()  # dark slate at the top left, sand at the bottom right


def test_classes_follow_kind_and_color():
    s = procedural.scene(3)
    labels = p2p.label_map(3, 128)
    top = s['shapes'][-1]  # the last shape is painted over the others: its center has its class
    cx, cy = (int(v * 128) for v in top['center'])
    want = 1 + 4 * procedural.KINDS.index(top['kind']) + top['color']
    if top['kind'] != 'ring':  # a ring's center shows what is beneath
        assert labels[cy, cx] == want
    assert want in labels


def test_edges_lie_on_class_boundaries():
    labels = p2p.label_map(7, 64)
    e = p2p.edges(labels)[..., 0] == 0
    assert e.any()
    ys, xs = np.nonzero(e)
    for y, x in zip(ys, xs):
        nb = [labels[y, min(x + 1, 63)], labels[min(y + 1, 63), x]]
        assert any(n != labels[y, x] for n in nb)


def test_recolor_ground_truth_permutes_the_palette_only():
    for i in range(12):
        a, b = p2p.recolor_source(i, 64), p2p.recolor_target(i, 64)
        labels = p2p.label_map(i, 64)
        bg = _erode(_erode(labels == 0))
        np.testing.assert_array_equal(a[bg], b[bg])  # the background is untouched
        inner = _erode((labels > 0) & (p2p.edges(labels)[..., 0] == 255))
        draws = (labels[inner].astype(int) - 1) % 4
        colors_a = procedural.COLORS[p2p.DOMAIN_A[draws]]
        assert np.abs(a[inner].astype(float) - colors_a).max() <= 1
        assert np.abs(b[inner].astype(float) - procedural.COLORS[p2p.RECOLOR[p2p.DOMAIN_A[draws]]]).max() <= 1


def test_recolor_domains_differ_in_distribution():
    # Shapes of A are only red or green, of B only yellow or blue: no image could belong to both
    # (with the whole palette on both sides, the identity was a perfect CycleGAN solution).
    assert set(p2p.DOMAIN_A) == {0, 1} and set(p2p.DOMAIN_B) == {2, 3}
    # each A color goes to the nearer B color: the mapping unpaired training can identify
    for a in (0, 1):
        dist = {b: np.square(procedural.COLORS[a] - procedural.COLORS[b]).sum() for b in (2, 3)}
        assert p2p.RECOLOR[a] == min(dist, key=dist.get)
    for i in range(8):
        ex = p2p.example('recolor', i, 32)
        for key, allowed in (('A', p2p.DOMAIN_A), ('B', p2p.DOMAIN_B)):
            img = ex[key].reshape(-1, 3).astype(float)
            for c in range(4):
                present = np.any(np.abs(img - procedural.COLORS[c]).max(-1) <= 1)
                assert not present or c in allowed, (i, key, c)


def test_unpaired_training_never_shows_a_pair_and_test_scenes_are_held_out():
    train = [p2p.example('recolor', i, 16) for i in range(4)]
    for ex in train:  # B is another scene: not A repainted
        assert not any(np.array_equal(p2p.recolor_target(2 * i, 16), ex['B']) for i in range(4))
    test = p2p.example('recolor', 0, 16, split='test')
    np.testing.assert_array_equal(test['B'], p2p.recolor_target(p2p.scene_index('test', 0), 16))
    assert p2p.scene_index('test', 0) > 10 ** 8
    with pytest.raises(ValueError, match="split='val'"):
        p2p.example('labels2image', 0, 16, split='val')
    with pytest.raises(ValueError, match="task='depth'"):
        p2p.example('depth', 0, 16)


def test_edges2image_targets_paint_each_shape_in_its_kinds_color():
    # An outline cannot tell a shape's color draw; its kind it can, so the target is a function of the input.
    seen = set()
    for i in range(20):
        ex = p2p.example('edges2image', i, 64)
        labels, image = ex['labels'], ex['target']
        inner = _erode((labels > 0) & (p2p.edges(labels)[..., 0] == 255))
        kinds = (labels[inner].astype(int) - 1) // 4
        seen |= set(kinds.tolist())
        assert np.abs(image[inner].astype(float) - p2p.KIND_COLORS[kinds]).max() <= 1
        bg = _erode(_erode(labels == 0))  # twice: a rotated square's corner reaches a diagonal neighbour
        np.testing.assert_array_equal(image[bg], p2p.example('labels2image', i, 64)['target'][bg])
    assert seen == {0, 1, 2}
