"""Entry point: ``python -m services.portal``."""

from services.portal.bootstrap import build, serve

if __name__ == "__main__":
    serve(*build())
