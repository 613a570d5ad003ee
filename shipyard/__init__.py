"""Shipyard: a self-hosted container build service speaking Northflank's v1 build API."""

__version__ = "0.1.0"
