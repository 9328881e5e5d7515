"""Entry point: ``python -m services.calls``."""

from services.calls.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
