"""The portal's pages, one module per audience; each module has one ``router``."""

from __future__ import annotations

from fastapi import APIRouter

from services.portal.views import account, admin, company, consortia, institute, integrators, public

ROUTERS: list[APIRouter] = [
    account.router,
    company.router,  # before public: /companies/me must win over /companies/{company_id}
    public.router,
    institute.router,
    consortia.router,
    integrators.router,
    admin.router,
]
