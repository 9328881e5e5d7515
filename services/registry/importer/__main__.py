"""Entry point: ``python -m services.registry.importer --topics TOPIC-ID:ccm2Id,...`` (see cli.py)."""

import sys

from services.registry.importer.cli import main

if __name__ == "__main__":
    sys.exit(main())
