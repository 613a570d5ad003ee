"""Permission names, as Northflank's API documents them ("Required permission").

Two generations of official clients name different permissions for the same call: the JS
client's endpoint metadata (and the API docs) say e.g. "Project > Services > Deployment >
Deploy Build" for starting a build, the Python SDK 2.x says "Project > Services > General >
Update". A token holding either is accepted: each call needs *one of* the names below.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    PROJECTS_CREATE = "Project > Projects > Manage > Create"
    PROJECTS_READ = "Project > Projects > Manage > Read"
    PROJECTS_DELETE = "Project > Projects > Manage > Delete"
    SERVICES_CREATE = "Project > Services > General > Create"
    SERVICES_READ = "Project > Services > General > Read"
    SERVICES_UPDATE = "Project > Services > General > Update"
    SERVICES_DELETE = "Project > Services > General > Delete"
    SERVICES_DEPLOY_BUILD = "Project > Services > Deployment > Deploy Build"
    SERVICES_VIEW_LOGS = "Project > Services > Deployment > View Instance Logs"
    SERVICES_VIEW_OBSERVABILITY = "Project > Services > Deployment > View Observability"
    JOBS_CREATE = "Project > Jobs > General > Create"
    JOBS_READ = "Project > Jobs > General > Read"
    JOBS_UPDATE = "Project > Jobs > General > Update"
    JOBS_DELETE = "Project > Jobs > General > Delete"
    JOBS_DEPLOY_BUILD = "Project > Jobs > Deployment > Deploy Build"
    JOBS_VIEW_LOGS = "Project > Jobs > Deployment > View Instance Logs"
    JOBS_VIEW_OBSERVABILITY = "Project > Jobs > Deployment > View Observability"
    SERVICE_SECRETS_READ = "Project > Secrets > Services > Read"
    SERVICE_SECRETS_UPDATE = "Project > Secrets > Services > Update"
    JOB_SECRETS_READ = "Project > Secrets > Jobs > Read"
    JOB_SECRETS_UPDATE = "Project > Secrets > Jobs > Update"


ALL = frozenset(Permission)

# A requirement: the first name is the one error messages cite (the JS metadata's), any of
# them suffices.
Requirement = tuple[Permission, ...]

# Per entity ("service" | "job"): which permission(s) each kind of call needs.
READ: dict[str, Requirement] = {
    "service": (Permission.SERVICES_READ,),
    "job": (Permission.JOBS_READ,),
}
CREATE: dict[str, Requirement] = {
    "service": (Permission.SERVICES_CREATE,),
    "job": (Permission.JOBS_CREATE,),
}
# PUT create-or-update: the metadata names Create; updating an existing one with Update is
# what PATCH would allow anyway.
CREATE_OR_UPDATE: dict[str, Requirement] = {
    "service": (Permission.SERVICES_CREATE,),
    "job": (Permission.JOBS_CREATE,),
}
UPDATE: dict[str, Requirement] = {
    "service": (Permission.SERVICES_UPDATE,),
    "job": (Permission.JOBS_UPDATE,),
}
DELETE: dict[str, Requirement] = {
    "service": (Permission.SERVICES_DELETE,),
    "job": (Permission.JOBS_DELETE,),
}
# Start and abort a build: JS metadata "Deployment > Deploy Build", Python SDK "General > Update".
DEPLOY_BUILD: dict[str, Requirement] = {
    "service": (Permission.SERVICES_DEPLOY_BUILD, Permission.SERVICES_UPDATE),
    "job": (Permission.JOBS_DEPLOY_BUILD, Permission.JOBS_UPDATE),
}
# Get one build: the JS metadata names Read for services but Deploy Build for jobs; the SDK
# names Update for jobs. Read stays accepted (list builds needs only Read).
GET_BUILD: dict[str, Requirement] = {
    "service": (Permission.SERVICES_READ,),
    "job": (Permission.JOBS_DEPLOY_BUILD, Permission.JOBS_READ, Permission.JOBS_UPDATE),
}
# Build logs: the API docs and the SDK name "Deployment > View Instance Logs".
READ_LOGS: dict[str, Requirement] = {
    "service": (Permission.SERVICES_VIEW_LOGS, Permission.SERVICES_READ),
    "job": (Permission.JOBS_VIEW_LOGS, Permission.JOBS_READ),
}
READ_METRICS: dict[str, Requirement] = {
    "service": (Permission.SERVICES_VIEW_OBSERVABILITY, Permission.SERVICES_READ),
    "job": (Permission.JOBS_VIEW_OBSERVABILITY, Permission.JOBS_READ),
}
SECRETS_READ: dict[str, Requirement] = {
    "service": (Permission.SERVICE_SECRETS_READ,),
    "job": (Permission.JOB_SECRETS_READ,),
}
SECRETS_UPDATE: dict[str, Requirement] = {
    "service": (Permission.SERVICE_SECRETS_UPDATE,),
    "job": (Permission.JOB_SECRETS_UPDATE,),
}
