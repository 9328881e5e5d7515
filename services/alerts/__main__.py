"""Entry point: ``python -m services.alerts``."""

from services.alerts.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
