"""From documents to batches: the token cache, batching, and data statistics.

- ``token_cache``: tokenize once into a cached token file, keyed on what decides the ids;
- ``token_stream``: tokenizing a split chunk by chunk, with progress;
- ``fingerprint``: content digests of files, for the cache's key;
- ``batching``: windows or padded rows cut from the tokens, the batch plan, validation rows;
- ``statistics``: ``tel data prepare`` and ``tel data analyze``.

May import: ``tel_core.config``, ``tel_core.registry``, ``tel_core.errors``, ``tel_core.ui``.
"""
