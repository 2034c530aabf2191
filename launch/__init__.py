"""The launcher, read in this order:

recipe.py       a recipe (YAML of OpenRLHF's own dotted flags) and `to_argv`, the one place keys become flags
runs.py         `resolve`: the recipe as one run submits it (paths, folders, services, secrets, resume); run folders
preflight.py    the checks on a resolved recipe, each one line with its fix; data_checks.py for the files,
                disk_checks.py for what the run writes (runs folder, checkpoints, journal)
estimates.py    the arithmetic preflight uses: GPUs, steps, memory, disk (no I/O)
cluster.py      this machine's GPUs and memory, free ports, a local Ray head; probe.py checks every node of a cluster
runtime.py      the GPU runtime (.venv-gpu): what an interpreter has, attention; install.py installs it
jobs.py         the job's runtime env and command (quoted for sh and Ray's CLI), submission, reward services
session.py      running a resolved recipe: data, services, runtime, a Ray head, its jobs
stages.py       a curriculum: `recipe.stages` run one after another, each from the previous stage's model
smoke.py        `launch smoke`: the recipe for a few steps, every stage recorded
__main__.py     `python -m launch train / preflight / sweep / smoke`
openrlhf_cli.py OpenRLHF's own parser, read from the installed train_ppo_ray; models.py, model shapes
"""
