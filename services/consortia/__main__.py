"""Entry point: ``python -m services.consortia``."""

from services.consortia.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
