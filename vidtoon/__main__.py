"""``python -m vidtoon``: same as the ``vidtoon`` command."""
from vidtoon.cli import main

if __name__ == "__main__":
    main()
