"""The pipeline: source (git, bundle) → context (build files, secrets) → buildah → registry push."""
