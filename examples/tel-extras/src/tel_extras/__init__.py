"""tel-extras: components for tel that tel does not ship.

- ``scalenorm`` (norm): one learned scale times x / ||x|| (Nguyen & Salazar, 2019).
- ``talking_heads`` (attention): heads that exchange scores before the softmax and
  weights after it (Shazeer et al., 2020).

tel finds them through the entry points in pyproject.toml; nothing imports this package
by name.
"""

__version__ = "0.1.0"
