"""Entry point: ``python -m services.registry``."""

from services.registry.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
