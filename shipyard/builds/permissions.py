"""Permission names, as Northflank's API documents them ("Required permission")."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    PROJECTS_CREATE = "Project > Projects > Manage > Create"
    PROJECTS_READ = "Project > Projects > Manage > Read"
    SERVICES_CREATE = "Project > Services > General > Create"
    SERVICES_READ = "Project > Services > General > Read"
    SERVICES_DEPLOY_BUILD = "Project > Services > Deployment > Deploy Build"
    JOBS_CREATE = "Project > Jobs > General > Create"
    JOBS_READ = "Project > Jobs > General > Read"
    JOBS_DEPLOY_BUILD = "Project > Jobs > Deployment > Deploy Build"
    SERVICE_SECRETS_READ = "Project > Secrets > Services > Read"
    SERVICE_SECRETS_UPDATE = "Project > Secrets > Services > Update"
    JOB_SECRETS_READ = "Project > Secrets > Jobs > Read"
    JOB_SECRETS_UPDATE = "Project > Secrets > Jobs > Update"


ALL = frozenset(Permission)

# Per entity ("service" | "job"): which permission each kind of call needs.
READ = {"service": Permission.SERVICES_READ, "job": Permission.JOBS_READ}
CREATE = {"service": Permission.SERVICES_CREATE, "job": Permission.JOBS_CREATE}
DEPLOY_BUILD = {"service": Permission.SERVICES_DEPLOY_BUILD, "job": Permission.JOBS_DEPLOY_BUILD}
SECRETS_READ = {"service": Permission.SERVICE_SECRETS_READ, "job": Permission.JOB_SECRETS_READ}
SECRETS_UPDATE = {
    "service": Permission.SERVICE_SECRETS_UPDATE,
    "job": Permission.JOB_SECRETS_UPDATE,
}
