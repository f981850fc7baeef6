"""`python -m tel_core ...` is `tel ...` (and what torchrun launches)."""

from tel_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
