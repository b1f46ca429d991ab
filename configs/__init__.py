"""Training configs, one module per dataset: ``get_config(arg)`` for ml_collections' config_flags."""
