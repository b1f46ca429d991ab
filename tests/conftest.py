"""Test session setup (before JAX is imported): 8 simulated CPU devices, quick (unoptimized)
XLA:CPU compilation, and a compilation
cache shared by every test and subprocess of this session, so that the many tests that build
the same tiny programs (and the subprocesses that launch them again) compile each only once."""
import atexit
import os
import shutil
import tempfile

flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in flags:
    flags += ' --xla_force_host_platform_device_count=8'
# Tiny programs run fast either way; LLVM's optimizations would cost more compile time than they save.
if '--xla_backend_optimization_level' not in flags:
    flags += ' --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
os.environ['XLA_FLAGS'] = flags.strip()

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    _cache = tempfile.mkdtemp(prefix='anycost-jax-test-cache-')
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
    os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
    os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a long-running test (deselect with -m "not slow")')
