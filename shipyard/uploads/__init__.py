"""Build contexts uploaded from a local directory (``shipyard build PATH``): a tar received
as a stream into the data dir, built once by a bundle-style build, deleted afterwards."""
