"""The build sandbox: what an untrusted Dockerfile and repository may make a build do."""
