"""Start dask workers as SLURM jobs (dask-jobqueue) for ``unetseg predict --dask ADDRESS``.

Run it on the cluster's login node (it hosts the scheduler); it submits ``--jobs`` batch
jobs, each running ``--processes`` worker processes, prints the scheduler's address and
waits (Ctrl-C stops the jobs). In another shell on the same network:

    python scripts/dask_slurm.py --jobs 10 --cores 8 --memory 32GB --gpus 1 --walltime 02:00:00
    unetseg predict --dask tcp://LOGIN-NODE:PORT --model model.pt --out /shared/out /shared/stack.ome.zarr

``--print-script`` shows the batch script and submits nothing. Inputs, outputs and the
model must be on a file system the nodes share. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import time


def slurm_cluster(
    cores: int, memory: str, processes: int = 1, gpus: int = 0, walltime: str = "01:00:00", **extra
):
    """A ``dask_jobqueue.SLURMCluster`` for prediction workers: each job asks for ``cores``
    CPUs, ``memory`` and ``gpus`` GPUs (``--gres``) and runs ``processes`` worker processes
    of one task at a time each; torch in a worker uses ``cores // processes`` threads."""
    from dask_jobqueue import SLURMCluster

    threads = max(1, cores // processes)
    directives = [f"--gres=gpu:{gpus}"] if gpus else []
    return SLURMCluster(
        cores=processes,  # dask threads: one block at a time per worker process
        processes=processes,
        job_cpu=cores,
        memory=memory,
        walltime=walltime,
        job_extra_directives=directives + list(extra.pop("job_extra_directives", [])),
        # the nanny gives its workers OMP_NUM_THREADS=1 unless told otherwise
        job_script_prologue=[f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__OMP_NUM_THREADS={threads}"],
        scheduler_options={"dashboard_address": extra.pop("dashboard_address", ":8787")},
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="batch jobs to submit")
    parser.add_argument("--cores", type=int, default=4, help="cores per job")
    parser.add_argument("--memory", default="16GB", help="memory per job")
    parser.add_argument("--processes", type=int, default=1, help="worker processes per job")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per job (--gres=gpu:N)")
    parser.add_argument("--walltime", default="01:00:00")
    parser.add_argument("--queue", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--print-script", action="store_true", help="show the batch script, submit nothing")
    args = parser.parse_args()
    extra = {key: value for key, value in (("queue", args.queue), ("account", args.account)) if value}
    cluster = slurm_cluster(args.cores, args.memory, args.processes, args.gpus, args.walltime, **extra)
    if args.print_script:
        print(cluster.job_script())
        cluster.close()
        return
    cluster.scale(jobs=args.jobs)
    print(f"scheduler: {cluster.scheduler_address}  (unetseg predict --dask {cluster.scheduler_address} ...)")
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
