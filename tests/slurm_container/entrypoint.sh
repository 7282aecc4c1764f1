#!/bin/bash
# Starts munge, slurmctld and slurmd in the background, then slurmrestd in the
# foreground on 127.0.0.1:${SLURMRESTD_PORT:-6920}. Keys are made on first start.
set -euo pipefail
mkdir -p /var/lib/slurm/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown slurm:slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
chown munge:munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
if [[ ! -s /var/lib/slurm/jwt_hs256.key ]]; then
  dd if=/dev/urandom of=/var/lib/slurm/jwt_hs256.key bs=32 count=1 status=none
  chown slurm:slurm /var/lib/slurm/jwt_hs256.key
  chmod 0600 /var/lib/slurm/jwt_hs256.key
fi
sed -i "s/^SlurmctldHost=[^(]*/SlurmctldHost=$(hostname -s)/" /etc/slurm/slurm.conf
runuser -u munge -- /usr/sbin/munged
/usr/sbin/slurmctld
/usr/sbin/slurmd -N icx24
# SLURM_JWT=daemon: slurmrestd passes each request's token on to slurmctld. Without
# CAP_SYS_ADMIN a container may not unshare its System V IPC namespace or its file
# descriptor table, which 24.11 does by default ("Unable to unshare System V
# namespace: Operation not permitted").
exec runuser -u slurmrestd -- env SLURM_JWT=daemon SLURMRESTD_SECURITY=disable_unshare_sysv,disable_unshare_files /usr/sbin/slurmrestd \
  -a rest_auth/jwt -s openapi/slurmctld "127.0.0.1:${SLURMRESTD_PORT:-6920}"
