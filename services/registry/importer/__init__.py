"""Project-history importer: funded EDF projects from the Funding & Tenders Portal, attached by PIC.

``python -m services.registry.importer --topics EDF-2023-DA-AIR-SPS:46039380`` harvests the funded
projects of the given topics (``portal``, ``formats``, ``harvest``) and adds a project-history item to
every registered organisation whose PIC took part (``domain.add_project_history``), emitting
``company.updated`` through the registry's outbox.
"""
