"""Widths as data: the family-agnostic mechanism (:mod:`.core`) and Anycost StyleGAN2's rules
(:mod:`.anycost`), both re-exported here.

Channel sorting of a StyleGAN2 generator is the submodule :mod:`anycost_jax.elastic.sorting`,
not imported here: it needs the generator, and the generator needs this package.
"""
from anycost_jax.elastic.anycost import (BASE_CHANNELS, DEFAULT_N_RES, RATIOS, SAMPLING_MODES, SUPPORTED_RESOLUTIONS,
                                         FlexibleSpace, arch_code, arch_code_length, channels_per_resolution,
                                         check_channels, check_ratio, default_resolutions, export, full_channels,
                                         label, log2_resolution, num_elastic_layers, ratio_index, resolutions_up_to,
                                         sample, uniform_channels, uniform_grid, warn_untrained)
from anycost_jax.elastic.core import (CONFIG_SEPARATOR, check_widths, choice_table, export_module, format_config,
                                      importance_order, l1_order, live_widths, masks_from_widths, nonzero_indices,
                                      parse_config, permute_axis, sample_choices, slice_to_shapes, unique_labels)

__all__ = ['BASE_CHANNELS', 'DEFAULT_N_RES', 'RATIOS', 'SAMPLING_MODES', 'SUPPORTED_RESOLUTIONS', 'FlexibleSpace',
           'arch_code', 'arch_code_length', 'channels_per_resolution', 'check_channels', 'check_ratio',
           'default_resolutions', 'export', 'full_channels', 'label', 'log2_resolution', 'num_elastic_layers',
           'ratio_index', 'resolutions_up_to', 'sample', 'uniform_channels', 'uniform_grid', 'warn_untrained',
           'CONFIG_SEPARATOR', 'check_widths', 'choice_table', 'export_module', 'format_config', 'importance_order',
           'l1_order', 'live_widths', 'masks_from_widths', 'nonzero_indices', 'parse_config', 'permute_axis',
           'sample_choices', 'slice_to_shapes', 'unique_labels']
