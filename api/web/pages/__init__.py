"""The pages, one module per part of the service a person uses."""

from fastapi import APIRouter

from api.web.pages import account, catalogue, join, manage, reorganisations, status

ROUTERS: tuple[APIRouter, ...] = (
    account.router,
    catalogue.router,
    join.router,
    status.router,
    manage.router,
    reorganisations.router,
)
