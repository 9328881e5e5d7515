"""Entry point: ``python -m services.projects``."""

from services.projects.bootstrap import build
from shared.http import serve

if __name__ == "__main__":
    serve(*build())
