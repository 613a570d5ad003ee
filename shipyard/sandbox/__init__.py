"""The build sandbox: what stands between an untrusted Dockerfile and the host.

Every build runs as an unprivileged host user of its own project (rootless buildah in a user
namespace), inside a network namespace with an outbound-only policy, in cgroups that cap its
memory, pids and CPU, after its Dockerfile passed the mount policy. See SECURITY.md.
"""
