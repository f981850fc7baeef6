"""Plugins and the contracts between the core and its components.

- ``hookspecs``: one hook per kind of component, and the ``hookimpl`` marker;
- ``registry``: entry points loaded one at a time, components by kind and name;
- ``interfaces``: the contexts components receive and the abstract classes of the
  components that are not torch modules (datasets, tokenizers, loggers);
- ``media``: histograms and images, what probes hand to loggers besides numbers.

Plugin authors reach all of this through ``tel_core.plugin``.

May import: ``tel_core.errors``, ``tel_core.ui``.
"""
