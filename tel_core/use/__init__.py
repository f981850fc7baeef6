"""Using a trained model: loading a run, evaluating, generating, chatting, exporting.

- ``load_run``: a trained model rebuilt from its run directory alone (``load_run``);
- ``evaluate``: ``tel eval``'s metrics on a split or another dataset;
- ``generate``: text from a loaded run, piece by piece;
- ``chat``: the interactive loop of ``tel chat``;
- ``export``: safetensors and Hugging Face ``transformers`` directories.

May import: ``tel_core.train`` and everything below it; never ``tel_core.commands``.
"""
