#!/bin/bash
# One daemon set of the Slurm 24.11 test cluster, all sharing the host's network:
#   entrypoint.sh controller   munged, slurmctld, then slurmrestd in the foreground
#   entrypoint.sh node NAME    munged, then slurmd for node NAME in the foreground
# /keys (mounted, the same for every container) holds munge.key and jwt_hs256.key.
set -euo pipefail
role=${1:?usage: entrypoint.sh controller | node NAME}
# The controller's name must be this host's: the container shares its hostname.
sed -i "s/^SlurmctldHost=[^(]*/SlurmctldHost=$(hostname -s)/" /etc/slurm/slurm.conf
install -o munge -g munge -m 0400 /keys/munge.key /etc/munge/munge.key
install -d -o munge -g munge /run/munge
install -d -o slurm -g slurm /var/log/slurm
runuser -u munge -- /usr/sbin/munged
case $role in
  controller)
    install -d -o slurm -g slurm /var/lib/slurm /var/lib/slurm/slurmctld
    install -o slurm -g slurm -m 0600 /keys/jwt_hs256.key /var/lib/slurm/jwt_hs256.key
    /usr/sbin/slurmctld
    # SLURM_JWT=daemon: slurmrestd passes each request's token on to slurmctld. Without
    # CAP_SYS_ADMIN a container may not unshare its System V IPC namespace or its file
    # descriptor table, which 24.11 does by default ("Unable to unshare System V
    # namespace: Operation not permitted").
    exec runuser -u slurmrestd -- env SLURM_JWT=daemon \
      SLURMRESTD_SECURITY=disable_unshare_sysv,disable_unshare_files \
      /usr/sbin/slurmrestd -a rest_auth/jwt -s openapi/slurmctld 127.0.0.1:6920
    ;;
  node)
    install -d /var/spool/slurmd
    exec /usr/sbin/slurmd -D -N "${2:?usage: entrypoint.sh node NAME}"
    ;;
  *) echo "entrypoint.sh: unknown role $role" >&2; exit 2 ;;
esac
