"""Entry point: ``python -m services.matching``."""

from services.matching.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
