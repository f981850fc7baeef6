"""Probes: measurements inside a training run, and where what they see goes.

- ``contract``: what a probe sees and hands back (``Probe``, ``ProbeContext``, ``Report``...);
- ``runner``: the selected probes, called on their steps by the loop (``Probes``);
- ``records``: the run directory's ``probes/`` folder.

May import: ``tel_core.model``, ``tel_core.data``, ``tel_core.config``,
``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``.
"""
