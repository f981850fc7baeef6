"""tel's built-in plugins, installed as ``tel_plugins``.

Each module registers its components through the ``tel`` entry-point group, exactly as
a third-party package would; nothing in ``tel_core`` imports these modules by path.
"""
