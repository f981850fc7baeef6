"""The model: the decoder skeleton, the torch building blocks plugins share, generation.

- ``decoder``: ``LanguageModel`` assembled from the selected components, its checks
  and parameter groups;
- ``nn``: ``Positional``, ``Attention`` and the marks that the skeleton and plugins share;
- ``kv_cache``: the KV cache and the protocol an attention may implement;
- ``sampling``: drawing tokens from a model (temperature, top-k, top-p, the sliding context).

Parallelism stays out of here: the model sees full tensors.

May import: ``tel_core.config``, ``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``.
"""
