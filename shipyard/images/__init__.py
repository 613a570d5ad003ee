"""Shared base images: imported into the base-image store every project may build ``FROM``."""
