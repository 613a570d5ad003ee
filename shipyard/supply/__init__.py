"""Supply chain: what an image says about where it came from (OCI labels, a reproducible
``created``), what is in it (an SBOM) and how it was made (SLSA provenance), attached to the
image in the registry as OCI referrers."""
